//! End-to-end tests: the real `ferrocast` binary, real ffmpeg publishers, real ffmpeg/ffprobe
//! players over RTMP, HLS and MPEG-TS over HTTP, plus hand-crafted hostile RTMP bytes.
//!
//! Every test starts its own server on free 127.0.0.1 ports with its own data dir; fixtures are
//! generated once (see `support::ffmpeg::Fixture`) and published with `-c copy`, so the suite
//! runs on two cores. Needs `ffmpeg` and `ffprobe` on PATH (`scripts/test` installs them).

// A failing test prints the tails of the server's and the clients' logs to the terminal.
#![allow(clippy::print_stderr)]

mod support;

mod api;
mod api_live;
mod api_persistence;
mod bad_input;
mod browser_ingest;
mod chaos;
mod cluster;
mod config;
mod dash;
mod dashboard;
mod enhanced_rtmp;
mod flv;
mod gstreamer;
mod hls;
mod hooks;
mod http_limits;
mod inputs;
mod metrics;
mod mpegts;
mod publish;
mod push;
mod recording;
mod rtmp_play;
mod rtsp;
mod shutdown;
mod srt;
mod templates;
mod transcode;
mod webhooks;
