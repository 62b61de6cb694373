//! ferrocast: one process that takes live streams in and hands them out in every protocol.

// The CLI speaks to the terminal (usage, config errors) before logging exists.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod config;

use anyhow::{Context, Result};
use config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

const USAGE: &str = "Usage: ferrocast [--config FILE] | --check-config [FILE]

Live-media gateway: RTMP in; RTMP, HLS, DASH and MPEG-TS out.
With no file, embedded defaults apply (see config.example.yaml); FERROCAST_* environment
variables override both (FERROCAST_RTMP__LISTEN=0.0.0.0:1936).

Options:
  -c, --config FILE   YAML configuration file
  --check-config [FILE]
                      validate FILE (or the defaults) with the environment overrides,
                      print the effective configuration with secrets masked, and exit:
                      0 when valid, 2 at the first error (naming its key)
  -h, --help          this text
  -V, --version       version";

fn main() -> ExitCode {
    let mut config_path: Option<PathBuf> = None;
    let mut check = false;
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check-config" => {
                check = true;
                if let Some(p) = args.next_if(|a| !a.starts_with('-')) {
                    config_path = Some(p.into());
                }
            }
            "-c" | "--config" => match args.next() {
                Some(p) => config_path = Some(p.into()),
                None => return usage_error("--config needs a file"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("ferrocast {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    let config = match Config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrocast: {e:#}");
            return ExitCode::from(2);
        }
    };
    if check {
        return check_config(&config, config_path.as_deref());
    }
    init_logging(&config.log, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocast: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line an operator can act on, e.g. "cannot listen on 0.0.0.0:1935 for RTMP:
            // Address already in use".
            eprintln!("ferrocast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: what `nginx -t` does. Loading already checked every value; this also
/// opens the files the configuration names, then prints the result.
fn check_config(config: &Config, path: Option<&std::path::Path>) -> ExitCode {
    let what = path.map_or("the defaults".to_owned(), |p| p.display().to_string());
    if let (Some(cert), Some(key)) = (&config.rtmps.cert_file, &config.rtmps.key_file)
        && let Err(e) = rtmp::tls::ReloadingCert::load(cert, key)
    {
        eprintln!("ferrocast: {what}: rtmps.cert_file/rtmps.key_file: {e:#}");
        return ExitCode::from(2);
    }
    if let Some(ca) = &config.tls.extra_ca_file
        && let Err(e) = std::fs::metadata(ca)
    {
        eprintln!("ferrocast: {what}: tls.extra_ca_file {}: {e}", ca.display());
        return ExitCode::from(2);
    }
    match serde_saphyr::to_string(config) {
        Ok(yaml) => {
            println!("# effective configuration of {what} with the environment (secrets masked)");
            print!("{yaml}");
            eprintln!("ferrocast: {what}: configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrocast: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("ferrocast: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn init_logging(filter: &str, format: config::LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt;
    // `init` also installs the `log` bridge (tracing-log), so warnings that srt-protocol, sqlx
    // and retina write through `log` reach the same output.
    subscriber(filter, format, std::io::stderr).init();
}

/// The subscriber: the level filter (`RUST_LOG` wins over `log`), then text or JSON lines.
fn subscriber<W>(
    filter: &str,
    format: config::LogFormat,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    let targets: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("ferrocast: bad log filter {spec:?} ({e}); using info");
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let layer = match format {
        config::LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(writer)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        config::LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer).with(targets)
}

/// A configured period where 0 means never.
fn nonzero(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let rtmp_listener = bind(config.rtmp.listen, "RTMP").await?;
    let srt_listener = if config.srt.enabled {
        let l = srt::bind(config.srt.listen, config.srt.latency)
            .await
            .with_context(|| format!("cannot listen on {} for SRT", config.srt.listen))?;
        Some(l)
    } else {
        None
    };
    let rtmps = match (
        &config.rtmps.listen,
        &config.rtmps.cert_file,
        &config.rtmps.key_file,
    ) {
        (Some(addr), Some(cert), Some(key)) => {
            let reloading = rtmp::tls::ReloadingCert::load(cert, key)
                .context("cannot load the RTMPS certificate")?;
            let tls = reloading.server_config()?;
            Some((bind(*addr, "RTMPS").await?, reloading, tls))
        }
        _ => None,
    };
    let rtsp_listener = if config.rtsp.enabled {
        Some(bind(config.rtsp.listen, "RTSP").await?)
    } else {
        None
    };
    let http_listener = bind(config.http.listen, "HTTP").await?;
    let api_listener = match config.api.listen {
        Some(addr) => Some(bind(addr, "the API").await?),
        None => None,
    };

    let hub = hub::Hub::new(hub::HubConfig {
        gop_cache: config.hub.gop_cache,
        gop_cache_max_bytes: config.hub.gop_cache_max_bytes,
        gop_cache_evict_oldest: config.hub.gop_cache_evict_oldest,
        reader_queue_frames: config.hub.reader_queue_frames,
    });
    // The media port, for the dashboard's playback URLs (it may differ from the API's).
    let _http_announced = hub.announce_listener(hub::ListenerInfo {
        protocol: "http",
        addr: http_listener.local_addr()?,
        app: String::new(),
    });
    let recorder = record::Recorder::new(
        hub.clone(),
        record::RecordConfig {
            dir: config.recording.dir(&config.data_dir),
        },
    );
    let transcoder = transcode::Transcoder::new(
        hub.clone(),
        transcode::TranscodeConfig {
            ffmpeg: config.transcode.ffmpeg.clone(),
            max_children: config.transcode.max_children,
            ..transcode::TranscodeConfig::default()
        },
    );
    let hls = hls::HlsService::new(
        hub.clone(),
        hls::HlsConfig {
            segment_duration: config.hls.segment_duration,
            window: config.hls.window,
            end_grace: config.hls.end_grace,
            linger: config.hls.linger,
            ..hls::HlsConfig::default()
        },
    );
    let dash = dash::DashService::new(
        hub.clone(),
        dash::DashConfig {
            segment_duration: config.dash.segment_duration,
            window: config.dash.window,
            end_grace: config.dash.end_grace,
            linger: config.dash.linger,
            minimum_update_period: config.dash.minimum_update_period,
            suggested_presentation_delay: config.dash.suggested_presentation_delay,
            min_buffer_time: config.dash.min_buffer_time,
            part_duration: nonzero(config.dash.part_duration),
            ..dash::DashConfig::default()
        },
    );
    // One limiter for every TCP listener, so per-address and global limits span protocols.
    let limiter = (config.limits.max_connections.is_some()
        || config.limits.max_connections_per_ip.is_some())
    .then(|| access::ConnLimiter::new(config.limits.clone()));
    // The gateway is one user of the embeddable server: its publishers go into the hub
    // through the admission, and players come from the hub.
    let rtmp_server = rtmp::server::Server::builder()
        .hub(hub.clone())
        .handle_new_client(rtmp::server::handler::HubPublishing::new(hub.clone()))
        .config(rtmp::server::ServerConfig {
            url_scheme: match config.rtmp.url_scheme {
                config::UrlScheme::AppName => rtmp::server::UrlScheme::AppName,
                config::UrlScheme::ChannelKey => rtmp::server::UrlScheme::ChannelKey,
            },
            // Addresses listed by name (not `*`, not empty: both mean "anyone may play") are
            // trusted to play without the key.
            play_key_exempt: {
                let list = &config.access.play_allow;
                (!list.is_empty() && !list.is_any()).then(|| list.clone())
            },
            ping_interval: nonzero(config.rtmp.ping_interval),
            player_read_timeout: nonzero(config.rtmp.player_read_timeout),
            session: rtmp::session::SessionConfig {
                // `/CHANNEL/KEY`: every valid application is a channel.
                app: match config.rtmp.url_scheme {
                    config::UrlScheme::AppName => config.rtmp.app.clone(),
                    config::UrlScheme::ChannelKey => String::new(),
                },
                out_chunk_size: config.rtmp.chunk_size,
                limits: rtmp::chunk::DecoderLimits {
                    max_chunk_size: config.rtmp.max_incoming_chunk_size,
                    max_message_size: config.rtmp.max_message_size,
                    ..rtmp::chunk::DecoderLimits::default()
                },
            },
            handshake_timeout: config.rtmp.handshake_timeout,
            play_wait_timeout: config.rtmp.play_wait_timeout,
            idle_timeout: config.rtmp.idle_timeout,
            publisher_timeout: config.rtmp.publisher_timeout,
            max_connections: config.rtmp.max_connections,
            play_coalesce_max: config.rtmp.play_coalesce,
            play_coalesce_readers: config.rtmp.play_coalesce_readers,
            play_group_size: config.rtmp.play_group_size,
            limiter: limiter.clone(),
            ..rtmp::server::ServerConfig::default()
        })
        .build();

    let db_url = config.database_url();
    let store = store::open(&db_url)
        .await
        .with_context(|| format!("cannot open the database {}", config::mask_url(&db_url)))?;
    let control = control::Control::load(
        store.clone(),
        hub.clone(),
        hls.clone(),
        control::ControlConfig {
            auto_create: config.ingest.auto_create,
        },
    )
    .await
    .context("cannot load stream configuration from the database")?;
    control.set_dash(dash.clone());
    let push = push::PushManager::new(hub.clone(), config.tls.extra_ca_file.as_deref());
    control.set_push(push.clone());
    // The event bus and its sinks (`/api/v1/hooks`); the sources are wired below.
    let bus = events::EventBus::new(config.events.node());
    let webhooks = events::Webhooks::new(
        bus.clone(),
        store.clone(),
        config.events.settings(&config.data_dir),
    );
    let hooks_loaded = webhooks
        .load()
        .await
        .context("cannot load event hooks from the database")?;
    push.set_state_observer(events::sources::push_observer(bus.clone()));
    let inputs = inputs::InputManager::new(
        hub.clone(),
        inputs::DriverConfig {
            ffmpeg: config.browser.ffmpeg.clone(),
            ..inputs::DriverConfig::default()
        },
    );
    inputs.set_notifier(events::sources::inputs_notifier(bus.clone()));
    recorder.set_settings({
        let control = control.clone();
        Arc::new(move |code: &str| {
            let r = control.get(code)?;
            (r.recording.enabled && !r.disabled).then(|| record_settings(&r.recording))
        })
    });
    // Retention keeps applying to a stream whose recording was turned off.
    recorder.set_limits({
        let control = control.clone();
        Arc::new(move |code: &str| Some(record_settings(&control.get(code)?.recording)))
    });
    transcoder.set_settings({
        let control = control.clone();
        Arc::new(move |code: &str| {
            let r = control.get(code)?;
            (!r.disabled).then(|| r.transcode.clone())
        })
    });
    // A rendition's segments are numbered (HLS) and timed (DASH) as its source's, so players
    // switch between them on the same boundaries.
    let parent_of: hls::ParentFn = {
        let control = control.clone();
        Arc::new(move |code: &str| control.rendition_of(code).map(|(parent, _)| parent))
    };
    hls.set_parent(parent_of.clone());
    dash.set_parent(parent_of);
    control.set_change_observer({
        let recorder = recorder.clone();
        let transcoder = transcoder.clone();
        Arc::new(move |code: &str| {
            recorder.refresh(code);
            transcoder.refresh(code);
        })
    });
    control.set_inputs(inputs.clone());
    info!(
        store = control.store_kind(),
        streams = control.list().len(),
        "stream configuration loaded"
    );

    let callback = match (&config.callback.url, &config.callback.jwt_secret) {
        (Some(url), Some(secret)) => Some(hooks::CallbackConfig {
            url: url.clone(),
            jwt_secret: secret.clone(),
            subject: config.callback.subject.clone(),
            rtmp_host: config.callback.rtmp_host.clone(),
            rtmp_port: config.rtmp.listen.port(),
            timeout: config.callback.timeout,
        }),
        _ => None,
    };
    let gate = gate::Gate::new(
        hub.clone(),
        control.clone(),
        gate::GateConfig {
            app: config.rtmp.app.clone(),
            max_code_len: config.access.id_max_length,
            publish_allow: config.access.publish_allow.clone(),
            play_allow: config.access.play_allow.clone(),
            notify: config.hooks.notify(),
            callback,
        },
    )
    .context("invalid hooks or callback configuration")?;
    gate.set_relays(Arc::new(Relays {
        inputs: inputs.clone(),
        push: push.clone(),
    }));
    // `recording.done` for the event sinks, nginx-rtmp's `on_record_done` for hooks.
    recorder.set_done_observer({
        let bus = bus.clone();
        let gate = gate.clone();
        Arc::new(move |d: record::RecordingDone| {
            gate.record_done(
                &d.code,
                &d.file.path.display().to_string(),
                d.file.start_ms,
                d.file.end_ms,
                d.file.bytes,
            );
            bus.emit(
                events::EventKind::RecordingDone,
                Some(&d.code),
                serde_json::json!({
                    "id": d.file.id,
                    "path": d.file.path.display().to_string(),
                    "start": events::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(d.file.start_ms).unwrap_or(0))),
                    "end": events::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(d.file.end_ms).unwrap_or(0))),
                    "duration_s": d.file.duration_ms() as f64 / 1000.0,
                    "bytes": d.file.bytes,
                    "format": "ts",
                }),
            );
        })
    });
    // The gate wraps the control plane's rules with IP rules, hooks and the callback.
    // The wrapper turns the sessions the gate hears of into session.opened/closed events.
    let mut admission: Arc<dyn hub::Admission> = Arc::new(gate.clone());
    let registry = match &config.cluster.redis_url {
        Some(url) => {
            let registry = cluster::Registry::new(cluster::RegistryConfig {
                redis_url: url.clone(),
                node_id: config.node_id(),
                rtmp_url: config.cluster_rtmp_url(),
                http_url: config.cluster_http_url(),
                prefix: config.cluster.prefix.clone(),
                ttl: config.cluster.ttl,
                takeover: config.cluster.takeover,
            })
            .context("invalid cluster.redis_url")?;
            admission = cluster::admission(
                admission,
                registry.clone(),
                hub.clone(),
                Arc::new(EdgePulls(inputs.clone())),
            );
            info!(node = registry.node_id(), rtmp = %config::mask_url(&config.cluster_rtmp_url()), http = %config.cluster_http_url(), "cluster: registering streams in Redis");
            Some(registry)
        }
        None => None,
    };
    hub.set_admission(events::sources::observe_sessions(admission, bus.clone()));
    let redis = match &config.redis.url {
        Some(url) => {
            let sink = Arc::new(commands::Commands::new(hub.clone()));
            let cfg = redisctl::RedisConfig {
                url: url.clone(),
                channel: config.redis.channel.clone(),
            };
            Some(redisctl::Listener::new(cfg, sink).context("invalid redis configuration")?)
        }
        None => None,
    };

    // Shutdown comes in two steps: `sessions` ends every media session (publishers, players,
    // pushes) and the playlists, while HTTP keeps serving for `shutdown_drain` so HLS and
    // DASH players fetch the ended playlist; then `shutdown` stops the rest.
    let shutdown = CancellationToken::new();
    let sessions = shutdown.child_token();
    let tasks = TaskTracker::new();
    tasks.spawn(gate.clone().run_updates(shutdown.clone()));
    if let Some(redis) = redis {
        info!(channel = %config.redis.channel, "redis control channel enabled");
        tasks.spawn(redis.run(shutdown.clone()));
    }
    info!(
        rtmp = %rtmp_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        "ferrocast {} listening",
        env!("CARGO_PKG_VERSION")
    );
    if let Some((listener, reloading, tls)) = rtmps {
        info!(rtmps = %listener.local_addr()?, "RTMPS listening");
        tasks.spawn(reloading.watch(config.rtmps.reload_interval, shutdown.clone()));
        tasks.spawn({
            let server = rtmp_server.clone();
            let shutdown = sessions.clone();
            async move {
                if let Err(e) = server.run_tls(listener, tls, shutdown).await {
                    error!(error = %e, "rtmps server failed");
                }
            }
        });
    }
    tasks.spawn({
        let shutdown = sessions.clone();
        async move {
            if let Err(e) = rtmp_server.run(rtmp_listener, shutdown).await {
                error!(error = %e, "rtmp server failed");
            }
        }
    });
    if let Some(listener) = rtsp_listener {
        info!(rtsp = %listener.local_addr()?, "RTSP listening");
        let server = rtsp::listener::Server::new(
            hub.clone(),
            rtsp::listener::ServerConfig {
                app: config.rtsp.app.clone(),
                session_timeout: config.rtsp.session_timeout,
                limiter: limiter.clone(),
                ..rtsp::listener::ServerConfig::default()
            },
        );
        let shutdown = sessions.clone();
        tasks.spawn(async move {
            if let Err(e) = server.run(listener, shutdown).await {
                error!(error = %e, "rtsp server failed");
            }
        });
    }
    if let Some(listener) = srt_listener {
        let server = srt::Server::new(
            hub.clone(),
            srt::ServerConfig {
                app: config.srt.app.clone(),
                latency: config.srt.latency,
                passphrase: config.srt.passphrase.clone(),
                publisher_timeout: config.rtmp.publisher_timeout,
                ..srt::ServerConfig::default()
            },
        )?;
        info!(srt = %listener.local_addr(), "SRT listening");
        let shutdown = sessions.clone();
        tasks.spawn(async move {
            if let Err(e) = server.run(listener, shutdown).await {
                error!(error = %e, "srt server failed");
            }
        });
    }
    tasks.spawn(push.run(sessions.clone()));
    info!(hooks = hooks_loaded, "event hooks loaded");
    // Until `shutdown`, after `sessions`: the publishers that end in the drain still report.
    tasks.spawn(events::sources::follow_hub(
        hub.clone(),
        bus.clone(),
        shutdown.clone(),
    ));
    // Another node asks this one to disconnect a publisher (an API kill sent there).
    if let Some(registry) = registry.clone() {
        let hub = hub.clone();
        tasks.spawn(registry.listen(move |code: &str| hub.kick_publisher(code), shutdown.clone()));
    }
    // The heartbeat: another node took a code whose publisher runs here (that publisher
    // goes); this node's readers per stream, for the cluster's view.
    if let Some(registry) = registry.clone() {
        let kicks = hub.clone();
        let counts = hub.clone();
        tasks.spawn(registry.run(
            move |code: &str, node: &str| {
                if kicks.kick_publisher(code) {
                    tracing::warn!(
                        stream = code,
                        node,
                        "cluster: another node took the stream; publisher disconnected"
                    );
                }
            },
            move || {
                let mut readers: std::collections::BTreeMap<String, u32> = Default::default();
                for s in counts.sessions() {
                    if s.role == hub::SessionRole::Reader {
                        *readers.entry(s.stream).or_default() += 1;
                    }
                }
                readers.into_iter().collect()
            },
            shutdown.clone(),
        ));
    }
    // Several nodes on one PostgreSQL: what the others write is applied here too.
    if let Some(feed) = store.change_feed() {
        tasks.spawn(cluster::follow_config(
            feed,
            control.clone(),
            webhooks.clone(),
            shutdown.clone(),
        ));
    }
    // Runtime streams made from templates go after `ingest.runtime_idle` without anyone.
    tasks.spawn(
        control
            .clone()
            .run_reaper(config.ingest.runtime_idle, shutdown.clone()),
    );
    inputs.start(&control.list(), sessions.clone());
    tasks.spawn(inputs.run());
    tasks.spawn(hub.clone().run_sampler(shutdown.clone()));
    if config.hls.enabled {
        tasks.spawn(hls.clone().run(shutdown.clone()));
    }
    if config.dash.enabled {
        tasks.spawn(dash.clone().run(shutdown.clone()));
    }
    // Until `shutdown`, after `sessions`: the publishers ending in the drain close their files.
    tasks.spawn(recorder.clone().run(shutdown.clone()));
    tasks.spawn(transcoder.clone().run(shutdown.clone()));
    let hls_service = hls.clone();
    let dash_service = dash.clone();
    let readiness = api::Readiness::default();
    let state = api::AppState {
        cluster: registry.clone(),
        edge: match &registry {
            Some(r) => Some(cluster::EdgeHttp::new(r.clone()).context("cluster HTTP client")?),
            None => None,
        },
        hub: hub.clone(),
        hls,
        dash,
        control,
        admin: api::AdminAccess::new(config.api.token.as_deref(), config.api.allow.clone()),
        requests: Arc::default(),
        readiness: readiness.clone(),
        config: api::EffectiveConfig::new(config.masked_json()),
        webhooks: webhooks.clone(),
        recorder,
        transcoder,
        tasks: tasks.clone(),
    };
    let http_config = api::server::HttpServerConfig {
        header_timeout: config.http.header_timeout,
        idle_timeout: config.http.idle_timeout,
        shared: limiter.clone(),
        http: config.http.max_connections_per_ip.map(|n| {
            access::ConnLimiter::new(access::LimitsConfig {
                max_connections: None,
                max_connections_per_ip: Some(n),
                exempt: config.limits.exempt.clone(),
            })
        }),
    };
    let browser = config.browser.enabled.then(|| {
        browser::BrowserIngest::new(
            hub.clone(),
            browser::BrowserConfig {
                ffmpeg: config.browser.ffmpeg.clone(),
                max_ffmpeg: config.browser.max_ffmpeg,
                max_chunk_bytes: config.browser.max_chunk_bytes,
                max_pending_bytes: config.browser.max_pending_bytes,
                relay_allow: config.browser.relay_allow.clone(),
                local_hosts: config.browser.local_hosts.clone(),
                app: config.rtmp.app.clone(),
                send_ffmpeg_output: config.browser.send_ffmpeg_output,
                send_error_details: config.browser.send_error_details,
                publisher_timeout: config.rtmp.publisher_timeout,
            },
            sessions.clone(),
        )
    });
    let app = match api_listener {
        Some(listener) => {
            info!(api = %listener.local_addr()?, "API listening");
            tasks.spawn(api::server::serve(
                listener,
                api::admin_listener_router(state.clone()),
                http_config.clone(),
                shutdown.clone(),
            ));
            api::media_router(state)
        }
        None => api::router(state),
    };
    // Browser publishers reach the media port, as RTMP publishers reach theirs.
    let app = match &browser {
        Some(b) => app.merge(b.router()),
        None => app,
    };
    tasks.spawn(api::server::serve(
        http_listener,
        app,
        http_config,
        shutdown.clone(),
    ));
    tasks.close();
    // Every listener is bound and the store loaded: load balancers may send traffic.
    readiness.set_ready();

    wait_for_signal().await;
    info!("shutting down");
    readiness.set_draining();
    let started = tokio::time::Instant::now();
    sessions.cancel();
    hls_service.finish();
    dash_service.finish();
    if !hls_service.codes().is_empty() || !dash_service.codes().is_empty() {
        tokio::time::sleep(config.shutdown_drain.min(config.shutdown_grace / 2)).await;
    }
    shutdown.cancel();
    let left = config.shutdown_grace.saturating_sub(started.elapsed());
    if tokio::time::timeout(left, tasks.wait()).await.is_err() {
        warn!(grace = ?config.shutdown_grace, "sessions still open after the grace period; exiting");
    }
    if let Some(b) = &browser {
        // Each session kills and reaps its ffmpeg on the sessions token; wait for that.
        let left = config.shutdown_grace.saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(left, b.wait()).await;
    }
    // Sessions are closed, so their done notifications and events are queued: deliver them
    // (each bounded).
    tokio::join!(gate.close(), webhooks.close());
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A hook's `rtmp://` redirect carried out by the input and push managers.
struct Relays {
    inputs: inputs::InputManager,
    push: push::PushManager,
}

impl gate::Relays for Relays {
    fn pull(&self, code: &str, url: &str) -> Result<(), String> {
        // As long as an on-demand input waits for readers (MediaMTX's default).
        let close_after =
            std::time::Duration::from_secs_f64(store::Failover::default().close_after_s);
        self.inputs.relay_pull(code, url, close_after)
    }

    fn push(&self, code: &str, url: &str) -> Result<(), String> {
        self.push.relay_push(code, url)
    }
}

/// A cluster's edge pulls, carried out as relay pulls.
struct EdgePulls(inputs::InputManager);

impl cluster::Pulls for EdgePulls {
    fn pull(&self, code: &str, url: &str) -> Result<(), String> {
        // As long as an on-demand input waits for readers (MediaMTX's default).
        let close_after =
            std::time::Duration::from_secs_f64(store::Failover::default().close_after_s);
        self.0.relay_pull(code, url, close_after)
    }

    fn stop(&self, code: &str) -> bool {
        self.0.stop_relay(code)
    }

    fn pulling(&self, code: &str) -> Option<String> {
        self.0.relay_url(code)
    }
}

/// A stream's `recording` settings as the recorder takes them.
fn record_settings(r: &store::RecordingSpec) -> record::Settings {
    record::Settings {
        // Validated to 1 s..100 years; a value that is not (an old row) falls back, never panics.
        rotate: std::time::Duration::try_from_secs_f64(r.rotate_s.max(1.0))
            .unwrap_or(std::time::Duration::from_secs(600)),
        rotate_bytes: r.rotate_bytes,
        max_age: (r.max_age_s > 0.0)
            .then(|| std::time::Duration::try_from_secs_f64(r.max_age_s).ok())
            .flatten(),
        max_bytes: r.max_bytes,
        schedule: r.windows(),
        format: match r.format {
            store::RecordingFormat::Ts => record::Format::Ts,
            store::RecordingFormat::Fmp4 => record::Format::Mp4,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    /// The only test here that installs a global subscriber (and the `log` bridge with it).
    #[test]
    fn dependency_log_lines_and_span_fields_reach_json_output() {
        use tracing_subscriber::util::SubscriberInitExt;
        let sink = Sink::default();
        subscriber("info", config::LogFormat::Json, sink.clone())
            .try_init()
            .expect("first global subscriber");
        // What srt-protocol's patched rejects and sqlx's slow statements do: `log`, not tracing.
        log::warn!(target: "srt_protocol::protocol::handshake", "handshake from a stranger rejected");
        log::debug!(target: "sqlx::query", "below the level: filtered");
        let span = tracing::info_span!(
            "rtmp",
            peer = "192.0.2.7:50000",
            conn = 42u64,
            code = "demo"
        );
        span.in_scope(|| tracing::warn!("publish refused"));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let bridged = lines
            .iter()
            .find(|l| l["fields"]["message"] == "handshake from a stranger rejected")
            .unwrap_or_else(|| panic!("the log::warn! line is missing:\n{text}"));
        assert_eq!(bridged["level"], "WARN");
        assert!(!text.contains("below the level"), "{text}");
        let refused = lines
            .iter()
            .find(|l| l["fields"]["message"] == "publish refused")
            .unwrap_or_else(|| panic!("the span line is missing:\n{text}"));
        assert_eq!(refused["span"]["code"], "demo", "{refused}");
        assert_eq!(refused["span"]["peer"], "192.0.2.7:50000", "{refused}");
        assert_eq!(refused["span"]["conn"], 42, "{refused}");
    }
}
