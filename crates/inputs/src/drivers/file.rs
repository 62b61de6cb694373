//! `file://` inputs (and `rtsps://`): an ffmpeg child remuxes the source to FLV on a pipe.
//! ffmpeg reads every container; `-stream_loop -1` with `-re` plays a file forever at its own
//! pace and keeps its timestamps increasing across the loop.

use super::{DriverConfig, InputError};
use crate::flv::FlvFeed;
use crate::source::Emitter;
use std::collections::VecDeque;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// Lines of ffmpeg's stderr kept for the error of a failed run.
const STDERR_LINES: usize = 8;

pub(crate) async fn run(
    input: &str,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let raw = input
        .strip_prefix("file://")
        .ok_or_else(|| InputError::Connect("expected file:///path".into()))?;
    let path = percent_encoding::percent_decode_str(raw.split('?').next().unwrap_or_default())
        .decode_utf8_lossy()
        .into_owned();
    if !std::path::Path::new(&path).is_file() {
        return Err(InputError::Connect(format!("{path}: no such file")));
    }
    let args = ["-re", "-stream_loop", "-1", "-i", path.as_str()];
    run_ffmpeg(&args, out, config).await
}

/// Runs `ffmpeg <input args> -c copy -f flv pipe:1` and feeds its output until it exits.
pub(crate) async fn run_ffmpeg(
    input_args: &[&str],
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let mut child = Command::new(&config.ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(input_args)
        .args(["-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy"])
        .args(["-flush_packets", "1", "-f", "flv", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Cancel by drop: the child dies with the driver's future.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| InputError::Connect(format!("cannot run {}: {e}", config.ffmpeg.display())))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(InputError::Connect("ffmpeg pipes missing".into()));
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut lines = BufReader::new(stderr).lines();
    let mut feed = FlvFeed::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut stderr_open = true;
    loop {
        tokio::select! {
            r = stdout.read(&mut buf) => {
                let n = r.map_err(|e| InputError::Source(format!("ffmpeg output: {e}")))?;
                if n == 0 {
                    break;
                }
                feed.bytes(&buf[..n], out).await?;
            }
            line = lines.next_line(), if stderr_open => match line {
                Ok(Some(l)) => {
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    // ffmpeg echoes its input URL in errors; keep credentials out of the API.
                    tail.push_back(crate::url::masked_text(&l));
                }
                _ => stderr_open = false,
            },
        }
    }
    let status = child.wait().await.ok();
    while let Ok(Some(l)) = lines.next_line().await {
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(crate::url::masked_text(&l));
    }
    let why = tail.into_iter().collect::<Vec<_>>().join(" | ");
    let code = status.and_then(|s| s.code());
    Err(match code {
        Some(0) => InputError::Ended("ffmpeg finished".into()),
        _ if why.is_empty() => InputError::Source(format!("ffmpeg exited ({code:?})")),
        _ => InputError::Source(format!("ffmpeg: {why}")),
    })
}
