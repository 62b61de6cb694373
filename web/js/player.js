// The preview player: HLS through hls.js or DASH through dash.js, both from web/vendor and
// loaded only when a preview starts. Restarts itself after a fatal error while it should play.

const scripts = {};

function load(src) {
  if (!scripts[src]) {
    scripts[src] = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = resolve;
      s.onerror = () => {
        delete scripts[src];
        reject(new Error('cannot load ' + src));
      };
      document.head.append(s);
    });
  }
  return scripts[src];
}

export class Preview {
  /** `onStatus(text, isError)` reports what the player does. */
  constructor(video, onStatus) {
    this.video = video;
    this.onStatus = onStatus;
    this.kind = null;
    this.url = null;
    this.player = null;
    this.retry = null;
    this.generation = 0;
  }

  /** Plays `url` with `kind` ('hls' or 'dash'); a no-op when it already does. */
  play(kind, url) {
    if (this.kind === kind && this.url === url && this.player) return;
    this.stop();
    this.kind = kind;
    this.url = url;
    this.start();
  }

  async start() {
    const gen = ++this.generation;
    const { kind, url, video } = this;
    this.onStatus('Loading…');
    try {
      if (kind === 'hls') {
        await load('vendor/hls.min.js');
        if (gen !== this.generation) return;
        if (window.Hls && window.Hls.isSupported()) {
          const hls = new window.Hls({ liveSyncDurationCount: 3, manifestLoadingMaxRetry: 4 });
          hls.on(window.Hls.Events.ERROR, (_e, data) => {
            if (data.fatal) this.fail(gen, 'HLS: ' + data.type + ' ' + data.details);
          });
          hls.on(window.Hls.Events.MANIFEST_PARSED, () => this.onStatus('Playing HLS'));
          hls.loadSource(url);
          hls.attachMedia(video);
          this.player = { destroy: () => hls.destroy() };
        } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
          // Safari plays HLS natively.
          video.src = url;
          this.player = { destroy: () => { video.removeAttribute('src'); video.load(); } };
          this.onStatus('Playing HLS');
        } else {
          throw new Error('this browser cannot play HLS');
        }
      } else {
        await load('vendor/dash.all.min.js');
        if (gen !== this.generation) return;
        const p = window.dashjs.MediaPlayer().create();
        p.updateSettings({ debug: { logLevel: window.dashjs.Debug.LOG_LEVEL_WARNING } });
        p.on(window.dashjs.MediaPlayer.events.ERROR, (e) => {
          const err = e.error || e;
          this.fail(gen, 'DASH: ' + (err.message || err.code || 'error'));
        });
        p.on(window.dashjs.MediaPlayer.events.PLAYBACK_PLAYING, () => this.onStatus('Playing DASH'));
        p.initialize(video, url, true);
        this.player = { destroy: () => p.destroy() };
      }
      video.muted = true;
      video.play().catch(() => {});
    } catch (e) {
      this.fail(gen, e.message);
    }
  }

  fail(gen, message) {
    if (gen !== this.generation) return;
    this.onStatus(message + ' — retrying in 3 s', true);
    this.destroyPlayer();
    clearTimeout(this.retry);
    this.retry = setTimeout(() => {
      if (gen === this.generation) this.start();
    }, 3000);
  }

  destroyPlayer() {
    if (this.player) {
      try {
        this.player.destroy();
      } catch {
        // A player torn down mid-error may throw; nothing is left to clean.
      }
    }
    this.player = null;
  }

  /** Stops playback and any pending retry. */
  stop() {
    this.generation += 1;
    clearTimeout(this.retry);
    this.destroyPlayer();
    this.kind = null;
    this.url = null;
  }
}
