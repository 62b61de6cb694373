// A test pattern with the wall clock in it, for the Go live page's "Test pattern" source and
// for bench/browser.sh, which reads the clock back from what viewers receive.

/** Bits of the wall-clock barcode in the test pattern (ms since the epoch fit in 44). */
export const CLOCK_BITS = 44;

/** A test pattern: the wall clock as text and as a barcode of [CLOCK_BITS] blocks between
 *  y = 40% and 58% of the frame, white for 1, most significant first, so a reader that decodes
 *  what viewers get can measure glass-to-glass latency (bench/browser.sh does). Audio, if
 *  asked for, is a 440 Hz tone. */
export function testPattern(width, height, fps, audio) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const block = Math.floor(width * 0.9 / CLOCK_BITS);
  const x0 = Math.floor((width - block * CLOCK_BITS) / 2);
  const y0 = Math.floor(height * 0.4);
  const bh = Math.floor(height * 0.18);
  let frame = 0;
  const draw = () => {
    const now = Date.now();
    ctx.fillStyle = '#203040';
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = '#f0f0f0';
    ctx.font = `${Math.floor(height / 12)}px monospace`;
    ctx.fillText(new Date(now).toISOString().slice(11, 23) + '  #' + frame++, x0, height * 0.25);
    let t = now;
    for (let i = CLOCK_BITS - 1; i >= 0; i--) {
      ctx.fillStyle = t % 2 ? '#ffffff' : '#000000';
      ctx.fillRect(x0 + i * block, y0, block, bh);
      t = Math.floor(t / 2);
    }
  };
  draw();
  const timer = setInterval(draw, 1000 / fps);
  const out = canvas.captureStream(fps);
  let ac;
  if (audio) {
    ac = new AudioContext({ sampleRate: 48000 });
    const osc = ac.createOscillator();
    osc.frequency.value = 440;
    const gain = ac.createGain();
    gain.gain.value = 0.1;
    const dest = ac.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    dest.stream.getAudioTracks().forEach((t) => out.addTrack(t));
  }
  out.stopExtra = () => {
    clearInterval(timer);
    // Teardown can run twice (stop, then the socket's close): close the context once.
    if (ac && ac.state !== 'closed') ac.close().catch(() => {});
  };
  return out;
}
