//! Which hardware encoder works here, found once by encoding a few frames with each.
//!
//! Listing ffmpeg's encoders is not enough: Debian's ffmpeg lists `h264_nvenc` and
//! `h264_vaapi` on machines with no GPU at all. A one-second test encode of a tiny picture is
//! what proves an encoder usable, as OvenMediaEngine and Open-Streamer probe at start.

use crate::command::Encoder;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use store::HwAccel;
use tokio::process::Command;

/// How long one test encode may take (a first CUDA context can take a second or two).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// The DRM render node VA-API uses.
pub const VAAPI_DEVICE: &str = "/dev/dri/renderD128";

/// What the probe found for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    /// The encoder to use.
    pub encoder: Encoder,
    /// Why, when it is not what was asked for (the fallback's reason), for logs and the API.
    pub note: Option<String>,
}

/// The candidates of a request, in the order tried.
pub fn candidates(request: HwAccel) -> Vec<Encoder> {
    let vaapi = Encoder::Vaapi {
        device: VAAPI_DEVICE.to_owned(),
    };
    match request {
        HwAccel::Auto => vec![Encoder::Nvenc, vaapi, Encoder::Qsv],
        HwAccel::None => vec![],
        HwAccel::Nvenc => vec![Encoder::Nvenc],
        HwAccel::Vaapi => vec![vaapi],
        HwAccel::Qsv => vec![Encoder::Qsv],
    }
}

/// The arguments of a test encode of 10 frames of 256x144 with `encoder`.
pub fn test_args(encoder: &Encoder) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error"]
        .map(String::from)
        .to_vec();
    let mut filter = "format=yuv420p".to_owned();
    if let Encoder::Vaapi { device } = encoder {
        a.extend(["-vaapi_device".into(), device.clone()]);
        filter = "format=nv12,hwupload".to_owned();
    }
    a.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=256x144:rate=10",
            "-frames:v",
            "10",
            "-vf",
        ]
        .map(String::from),
    );
    a.push(filter);
    a.extend([
        "-c:v".into(),
        encoder.codec().into(),
        "-f".into(),
        "null".into(),
        "-".into(),
    ]);
    a
}

/// Whether `encoder` encodes here; the error says why not.
pub async fn works(ffmpeg: &Path, encoder: &Encoder) -> Result<(), String> {
    if let Encoder::Vaapi { device } = encoder
        && !Path::new(device).exists()
    {
        return Err(format!("{device} does not exist"));
    }
    let child = Command::new(ffmpeg)
        .args(test_args(encoder))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", ffmpeg.display()))?;
    match tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Err(format!("test encode took over {PROBE_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stderr);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "{}: {}",
                out.status,
                last.chars().take(200).collect::<String>()
            ))
        }
    }
}

/// The encoder for `request`: the first candidate that works, else x264 with the reasons.
pub async fn probe(ffmpeg: &Path, request: HwAccel) -> Probed {
    let mut reasons = Vec::new();
    for c in candidates(request) {
        match works(ffmpeg, &c).await {
            Ok(()) => {
                return Probed {
                    encoder: c,
                    note: None,
                };
            }
            Err(e) => reasons.push(format!("{}: {e}", c.codec())),
        }
    }
    Probed {
        encoder: Encoder::X264,
        note: (!reasons.is_empty()).then(|| {
            format!(
                "no hardware encoder works ({}); using libx264",
                reasons.join("; ")
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_every_family_and_none_tries_nothing() {
        assert_eq!(candidates(HwAccel::Auto).len(), 3);
        assert!(candidates(HwAccel::None).is_empty());
        assert_eq!(candidates(HwAccel::Qsv), vec![Encoder::Qsv]);
        let a = test_args(&Encoder::Vaapi {
            device: "/dev/x".into(),
        })
        .join(" ");
        assert!(
            a.contains("-vaapi_device /dev/x")
                && a.contains("hwupload")
                && a.contains("h264_vaapi")
        );
    }

    /// On a machine without a GPU (CI, here) every hardware family fails its test encode and
    /// the ladder falls back to x264 saying why; with one, the found encoder is named.
    #[tokio::test]
    async fn the_probe_falls_back_to_x264_where_no_gpu_answers() {
        let ffmpeg = Path::new("ffmpeg");
        if works(ffmpeg, &Encoder::X264).await.is_err() {
            tracing::warn!("skipped: no ffmpeg with libx264 here");
            return;
        }
        let p = probe(ffmpeg, HwAccel::Auto).await;
        match p.encoder {
            Encoder::X264 => {
                let note = p.note.expect("a fallback says why");
                assert!(
                    note.contains("h264_nvenc")
                        && note.contains("h264_vaapi")
                        && note.contains("libx264"),
                    "{note}"
                );
            }
            other => assert!(p.note.is_none(), "{other:?}"),
        }
        let none = probe(ffmpeg, HwAccel::None).await;
        assert_eq!(
            none,
            Probed {
                encoder: Encoder::X264,
                note: None
            }
        );
        let missing = probe(Path::new("/nonexistent/ffmpeg"), HwAccel::Nvenc).await;
        assert!(missing.note.unwrap().contains("cannot run"));
    }
}
