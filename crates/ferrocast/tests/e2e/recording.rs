//! Recording to disk: rotated MPEG-TS and fragmented MP4 files that decode (in ffmpeg and VLC),
//! survive `kill -9`, are listed, downloaded (with ranges) and deleted over the API, kept within
//! a byte limit, started and stopped on request, and replayed as a DVR window
//! (`index.m3u8?ago=..&dur=..`) or a delayed live stream (`?delay=..`).

use crate::support::api::Api;
use crate::support::ffmpeg::{self, Fixture};
use crate::support::hook_server::{HookServer, Reply};
use crate::support::http;
use crate::support::server::{Server, Stop};
use crate::support::wait_until;
use serde_json::{Value, json};
use std::time::Duration;

fn files(api: &Api, code: &str) -> Vec<Value> {
    api.get(&format!("streams/{code}/recordings")).ok(200)["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn decode_clean(server: &Server, what: &str, url: &str) -> f64 {
    let out = crate::support::proc::run(
        ffmpeg::ffmpeg().args([
            "-i",
            url,
            "-f",
            "null",
            "-",
            "-progress",
            "pipe:1",
            "-nostats",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "{what}: ffmpeg decoding {url}:\n{}\n{}",
        out.stderr,
        server.log()
    );
    ffmpeg::parse_progress(&out.stdout).1.as_secs_f64()
}

#[test]
fn recordings_rotate_decode_survive_kill_9_and_replay_as_dvr() {
    let hooks = HookServer::start();
    hooks.reply("/record_done", Reply::ok());
    hooks.reply("/events", Reply::status(204));
    let mut server = Server::builder()
        .set("hooks.on_record_done", hooks.url("/record_done"))
        .start();
    let api = Api::new(server.http);
    api.post("hooks", &json!({"id": "rec", "url": hooks.url("/events")}))
        .ok(201);
    api.put(
        "streams/rec",
        &json!({"name": "rec", "recording": {"enabled": true, "rotate_s": 4}}),
    )
    .ok(201);
    // A byte limit of 1 MiB against 2.5 Mbit/s in 2 s files: retention must delete.
    api.put(
        "streams/ret",
        &json!({"name": "ret", "recording": {"enabled": true, "rotate_s": 2, "max_bytes": 1_048_576}}),
    )
    .ok(201);
    api.put("streams/manual", &json!({"name": "manual"}))
        .ok(201);
    let mut rec = server.publish("rec", Fixture::Small);
    let mut ret = server.publish("ret", Fixture::Hd720);
    let mut manual = server.publish("manual", Fixture::Small);
    server.wait_live("manual");
    let started = api
        .post("streams/manual/recording", &json!({"action": "start"}))
        .ok(200);
    assert_eq!(started["enabled"], true, "{started:#}");

    // 4 s files: three closed after ~13 s.
    let list = wait_until("three closed recordings", Duration::from_secs(30), || {
        let f = files(&api, "rec");
        (f.iter().filter(|f| f["recording"] == false).count() >= 3).then_some(f)
    });
    for f in list.iter().filter(|f| f["recording"] == false) {
        let secs = f["duration_s"].as_f64().unwrap();
        assert!(
            (3.5..=5.5).contains(&secs),
            "a 4 s file lasts {secs} s: {f:#}"
        );
        let url = format!("http://{}{}", server.http, f["url"].as_str().unwrap());
        let decoded = decode_clean(&server, "a closed recording", &url);
        assert!(decoded >= 3.0, "{decoded} s decoded from {f:#}");
    }
    assert_eq!(list.last().unwrap()["recording"], true, "{list:#?}");
    // nginx-rtmp's on_record_done and the recording.done event, for each closed file.
    let closed = &list[0];
    let call = hooks.wait_call(
        "/record_done",
        |c| c.arg("name") == Some("rec"),
        Duration::from_secs(10),
    );
    assert_eq!(call.arg("call"), Some("record_done"));
    assert_eq!(call.arg("app"), Some("live"));
    let path = call.must("path");
    assert!(path.ends_with(".ts") && path.contains("/rec/"), "{path}");
    assert!(std::path::Path::new(path).exists(), "{path}");
    hooks.wait_call(
        "/events",
        |c| {
            let body = String::from_utf8_lossy(&c.body);
            body.contains("\"recording.done\"") && body.contains(&closed["id"].to_string())
        },
        Duration::from_secs(10),
    );

    // A DVR window 8 s back, 4 s long: keyframe-aligned byte ranges of the files, dated.
    let text = server.get("/live/rec/index.m3u8?ago=8&dur=4").text();
    let now = std::time::SystemTime::now();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{text}");
    assert!(text.contains("#EXT-X-BYTERANGE:"), "{text}");
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    let listed = listed_secs(&text);
    // Whole GOPs (1 s) around the window: 4 s, plus at most one GOP at each end.
    assert!((3.5..=6.5).contains(&listed), "{listed} s listed:\n{text}");
    let pdt = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .unwrap_or_else(|| panic!("no date:\n{text}"));
    let first_ms = parse_iso8601(pdt);
    let fetched_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ago = (fetched_ms - first_ms) as f64 / 1000.0;
    assert!(
        (7.5..=10.5).contains(&ago),
        "the window starts {ago} s ago:\n{text}"
    );
    let dvr_url = format!("http://{}/live/rec/index.m3u8?ago=8&dur=4", server.http);
    let decoded = decode_clean(&server, "the DVR window", &dvr_url);
    assert!(
        (3.5..=6.5).contains(&decoded),
        "{decoded} s decoded from the DVR window"
    );
    server
        .get("/live/rec/index.m3u8?ago=x")
        .text()
        .contains("not a number")
        .then_some(())
        .expect("a bad DVR query is refused with a reason");

    // Timeshift: the stream 6 s behind, a live playlist over the recording whose segments keep
    // their numbers from one reload to the next.
    let delayed = |what: &str| {
        let text = server.get("/live/rec/index.m3u8?delay=6").text();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:"), "{what}:\n{text}");
        assert!(!text.contains("#EXT-X-ENDLIST"), "{what}:\n{text}");
        numbered(&text)
    };
    let first = delayed("delay=6");
    std::thread::sleep(Duration::from_millis(2500));
    let second = delayed("delay=6, 2.5 s later");
    let common: Vec<_> = first
        .iter()
        .filter_map(|(msn, seg)| {
            second
                .iter()
                .find(|(_, s)| s == seg)
                .map(|(m, _)| (*msn, *m))
        })
        .collect();
    assert!(!common.is_empty(), "{first:?}\n{second:?}");
    assert!(
        common.iter().all(|(a, b)| a == b),
        "a segment changed its number: {common:?}"
    );
    assert!(
        second[0].0 > first[0].0,
        "the window slides: {first:?} -> {second:?}"
    );
    let newest_ms = second
        .iter()
        .map(|(_, (_, _, start))| *start)
        .max()
        .unwrap();
    let behind = (now_ms() - newest_ms) as f64 / 1000.0;
    assert!(
        behind >= 6.0,
        "the newest listed segment started {behind} s ago"
    );
    let delayed_url = format!("http://{}/live/rec/index.m3u8?delay=6", server.http);
    let out = crate::support::proc::run(
        ffmpeg::ffmpeg().args(["-i", &delayed_url, "-t", "2", "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "ffmpeg on the delayed playlist:\n{}",
        out.stderr
    );

    // A range of a recording, as DVR players ask for it.
    let first = &list[0];
    let path = first["url"].as_str().unwrap();
    let r = http::request(
        server.http,
        "GET",
        path,
        &[("Range", "bytes=188-375")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body.len(), 188);
    assert_eq!(
        r.body[0], 0x47,
        "a range on a packet boundary starts with a sync byte"
    );

    // The byte limit held while the files rotated.
    let kept: u64 = files(&api, "ret")
        .iter()
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum();
    let current = files(&api, "ret")
        .iter()
        .filter(|f| f["recording"] == true)
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum::<u64>();
    assert!(
        kept - current <= 1_048_576,
        "{kept} bytes kept ({current} being written) over a 1 MiB limit"
    );

    // The manual recording stops on request and its file is closed.
    let stopped = api
        .post("streams/manual/recording", &json!({"action": "stop"}))
        .ok(200);
    assert_eq!(stopped["enabled"], false, "{stopped:#}");
    let manual_files = wait_until(
        "the manual recording closed",
        Duration::from_secs(10),
        || {
            let f = files(&api, "manual");
            (!f.is_empty() && f.iter().all(|f| f["recording"] == false)).then_some(f)
        },
    );
    let url = format!(
        "http://{}{}",
        server.http,
        manual_files[0]["url"].as_str().unwrap()
    );
    decode_clean(&server, "the manual recording", &url);
    api.post("streams/manual/recording", &json!({"action": "pause"}))
        .error(400, "VALIDATION_FAILED", &["action"]);

    // kill -9 mid-file: after the restart the cut file is closed and plays, the earlier ones
    // are untouched, and the next publish records a new file.
    let before = files(&api, "rec");
    ret.stop();
    manual.stop();
    server.restart(Stop::Kill);
    rec.stop();
    let after = files(&api, "rec");
    // A rotation may have happened between the listing and the kill: every file closed
    // before is still there, byte for byte. (The one being written is kept too, unless the
    // kill came before its first GOP reached the disk: then it held nothing and is deleted.)
    assert_closed_files_kept(&before, &after);
    assert!(after.iter().all(|f| f["recording"] == false), "{after:#?}");
    let cut = after.last().unwrap();
    assert_eq!(cut["recording"], false);
    let url = format!("http://{}{}", server.http, cut["url"].as_str().unwrap());
    decode_clean(&server, "the file cut by kill -9", &url);
    let _again = server.publish("rec", Fixture::Small);
    wait_until(
        "a new recording after the restart",
        Duration::from_secs(20),
        || (files(&api, "rec").len() > after.len()).then_some(()),
    );

    // Delete: a closed file goes, the one being written is refused.
    let id = after[0]["id"].as_u64().unwrap();
    assert_eq!(
        api.delete(&format!("streams/rec/recordings/{id}")).status,
        204
    );
    assert!(
        files(&api, "rec")
            .iter()
            .all(|f| f["id"].as_u64() != Some(id))
    );
    api.delete(&format!("streams/rec/recordings/{id}"))
        .error(404, "NOT_FOUND", &[]);
    let live = files(&api, "rec");
    let writing = live
        .iter()
        .find(|f| f["recording"] == true)
        .expect("a file being written");
    api.delete(&format!("streams/rec/recordings/{}", writing["id"]))
        .error(409, "CONFLICT", &[]);
}

/// What VLC makes of `url`: it remuxes it to an MPEG-TS file (as fast as it reads, not in
/// real time), whose duration and streams ffprobe then reads. VLC refuses to run as root, so
/// it runs as `nobody` then.
fn vlc_remux(url: &str, what: &str) -> (f64, Vec<Value>) {
    assert!(
        std::path::Path::new("/usr/bin/cvlc").exists(),
        "VLC (`cvlc`) is not installed: run `scripts/test`, which installs vlc-bin and \
         vlc-plugin-base"
    );
    let out_dir = crate::support::ScratchDir::new();
    let dir = out_dir.path().join("vlc");
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dst = dir.join("out.ts");
    let sout = format!("#std{{access=file,mux=ts,dst={}}}", dst.display());
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "nobody", "--", "cvlc"]);
        c
    } else {
        std::process::Command::new("cvlc")
    };
    cmd.args([
        "-I",
        "dummy",
        "--play-and-exit",
        "--aout",
        "dummy",
        url,
        "--sout",
        &sout,
    ]);
    let run = crate::support::proc::run(&mut cmd, Duration::from_secs(120));
    assert!(
        run.success() && dst.exists(),
        "{what}: VLC could not read {url} ({:?}):\n{}",
        run.status,
        run.stderr
    );
    let probe = crate::support::proc::run(
        ffmpeg::ffprobe()
            .args(["-show_format", "-show_streams"])
            .arg(&dst),
        Duration::from_secs(30),
    );
    let v: Value = serde_json::from_str(&probe.stdout)
        .unwrap_or_else(|e| panic!("{what}: ffprobe on VLC's output ({e}): {}", probe.stderr));
    let secs = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (secs, v["streams"].as_array().cloned().unwrap_or_default())
}

/// Three minutes of fragmented MP4 in 30 s files: each closed file decodes cleanly in ffmpeg
/// and plays through VLC, `?ago=60&dur=30` replays the 30 s that began a minute ago (in ffmpeg
/// and hls.js, and as DASH in dash.js and Shaka), a DASH player rewinds a minute into the
/// recording from the live end, and a `kill -9` leaves every earlier file intact and the cut
/// one playable.
#[test]
fn fmp4_recordings_of_three_minutes_in_30_s_files_play_in_ffmpeg_vlc_hlsjs_and_dash() {
    let mut server = Server::builder().start();
    let api = Api::new(server.http);
    api.put(
        "streams/mp4rec",
        &json!({"name": "mp4rec", "recording": {"enabled": true, "format": "fmp4", "rotate_s": 30}}),
    )
    .ok(201);
    let mut publisher = server.publish("mp4rec", Fixture::Small);
    let list = wait_until("six closed 30 s files", Duration::from_secs(260), || {
        let f = files(&api, "mp4rec");
        (f.iter().filter(|f| f["recording"] == false).count() >= 6).then_some(f)
    });
    let closed: Vec<&Value> = list.iter().filter(|f| f["recording"] == false).collect();
    for f in &closed {
        assert_eq!(f["format"], "fmp4", "{f:#}");
        let secs = f["duration_s"].as_f64().unwrap();
        assert!(
            (29.5..=31.5).contains(&secs),
            "a 30 s file lasts {secs} s: {f:#}"
        );
        let url = format!("http://{}{}", server.http, f["url"].as_str().unwrap());
        let decoded = ffmpeg::decode(&url, 40.0, Duration::from_secs(60));
        decoded.assert_clean(&format!("recorded file {}", f["id"]));
        decoded.assert_duration(&format!("recorded file {}", f["id"]), 29.0, Fixture::FPS);
        let streams = ffmpeg::streams(&url);
        let video = ffmpeg::stream_of(&streams, "video");
        assert_eq!(
            (&video["codec_name"], &video["width"], &video["height"]),
            (&json!("h264"), &json!(320), &json!(240)),
            "{video:#}"
        );
        assert_eq!(ffmpeg::stream_of(&streams, "audio")["codec_name"], "aac");
    }
    // The file being written reads cleanly as far as it goes: it grows a whole GOP at a time.
    let growing = list.last().unwrap();
    assert_eq!(growing["recording"], true, "{list:#?}");
    let url = format!("http://{}{}", server.http, growing["url"].as_str().unwrap());
    decode_clean(&server, "the MP4 file being written", &url);
    // VLC, over HTTP as a player would fetch it (the public DVR URL of the file).
    let id = closed[1]["id"].as_u64().unwrap();
    let (secs, streams) = vlc_remux(
        &format!("http://{}/live/mp4rec/rec-{id}.mp4", server.http),
        "a closed MP4 recording",
    );
    assert!(
        (29.0..=31.5).contains(&secs),
        "VLC read {secs} s: {streams:#?}"
    );
    ffmpeg::stream_of(&streams, "video");
    ffmpeg::stream_of(&streams, "audio");

    // Timeshift: the 30 s that began a minute ago, from the recording's index (each file is
    // a discontinuity with its own EXT-X-MAP).
    let asked_ms = now_ms() - 60_000;
    let text = server.get("/live/mp4rec/index.m3u8?ago=60&dur=30").text();
    assert!(text.contains("#EXT-X-VERSION:7"), "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"rec-"), "{text}");
    let first_ms = parse_iso8601(
        text.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
            .unwrap_or_else(|| panic!("no date:\n{text}")),
    );
    // The window opens on the keyframe at or before the instant asked (1 s GOPs).
    let early = (asked_ms - first_ms) as f64 / 1000.0;
    assert!(
        (-0.2..=1.5).contains(&early),
        "starts {early} s before the instant asked:\n{text}"
    );
    let listed = listed_secs(&text);
    assert!(
        (29.5..=32.5).contains(&listed),
        "{listed} s listed:\n{text}"
    );
    let dvr_url = format!(
        "http://{}/live/mp4rec/index.m3u8?ago=60&dur=30",
        server.http
    );
    let decoded = ffmpeg::decode(&dvr_url, 40.0, Duration::from_secs(60));
    decoded.assert_clean("the MP4 DVR window");
    decoded.assert_duration("the MP4 DVR window", 29.0, Fixture::FPS);
    // The live stream with two minutes of recording behind it, as HLS: a sliding playlist of
    // every GOP recorded since, numbered by the index.
    let live = server.get("/live/mp4rec/index.m3u8?dvr=120").text();
    assert!(!live.contains("#EXT-X-ENDLIST"), "{live}");
    let listed = listed_secs(&live);
    assert!(
        (115.0..=121.0).contains(&listed),
        "{listed} s listed:\n{live}"
    );
    // DASH over the same files: a static MPD of the window (a Period per file), and a
    // dynamic one whose time-shift buffer reaches back into the recording.
    let mpd = server.get("/live/mp4rec/index.mpd?ago=60&dur=30").text();
    assert!(mpd.contains("type=\"static\""), "{mpd}");
    assert!(
        mpd.matches("<Period ").count() >= 2,
        "the window crosses a file:\n{mpd}"
    );
    let dvr_mpd = server.get("/live/mp4rec/index.mpd?dvr=3600").text();
    assert!(
        dvr_mpd.contains("timeShiftBufferDepth=\"PT3600.000S\""),
        "{dvr_mpd}"
    );
    assert!(dvr_mpd.matches("<Period ").count() >= 6, "{dvr_mpd}");
    if let Some(_slot) = crate::dash::browser_ready() {
        for player in ["dashjs", "shaka"] {
            let report = crate::dash::play_in_browser(
                &format!("http://{}/live/mp4rec/index.mpd?ago=60&dur=30", server.http),
                player,
                10,
                &["320", "240"],
            );
            assert_eq!(
                report["ok"], true,
                "{player} on the DASH DVR window: {report:#}"
            );
            // Rewind a minute into the recording from the live end, across files.
            let report = crate::dash::play_in_browser(
                &format!("http://{}/live/mp4rec/index.mpd?dvr=3600", server.http),
                player,
                10,
                &["320", "240", "rewind60"],
            );
            assert_eq!(
                report["ok"], true,
                "{player} rewinding the DVR MPD: {report:#}"
            );
            let by = report["rewind"]["by"].as_f64().unwrap_or(0.0);
            assert!(by >= 54.0, "{player} rewound {by} s: {report:#}");
        }
        let from = asked_ms / 1000;
        let report = crate::dash::hls_js(
            "hls.js on the MP4 DVR window",
            &format!(
                "http://{}/live/mp4rec/index.m3u8?from={from}&dur=30",
                server.http
            ),
            10,
            "default",
            &[],
            Duration::from_secs(90),
        );
        assert_eq!(report["ok"], true, "{report:#}");
        assert!(
            report["played"].as_f64().unwrap_or(0.0) >= 7.0,
            "{report:#}"
        );
    }

    // kill -9 mid-file: the earlier files are untouched, the cut one is closed and plays,
    // and the next publish records anew.
    let before = files(&api, "mp4rec");
    server.restart(Stop::Kill);
    publisher.stop();
    let after = files(&api, "mp4rec");
    assert_closed_files_kept(&before, &after);
    let cut = after.last().unwrap();
    assert_eq!(cut["recording"], false, "{after:#?}");
    let url = format!("http://{}{}", server.http, cut["url"].as_str().unwrap());
    decode_clean(&server, "the MP4 file cut by kill -9", &url);
    let _again = server.publish("mp4rec", Fixture::Small);
    wait_until(
        "a new recording after the restart",
        Duration::from_secs(20),
        || (files(&api, "mp4rec").len() > after.len()).then_some(()),
    );
}

/// The seconds a media playlist lists (the sum of its `EXTINF`s).
fn listed_secs(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// (media sequence number, (URI, byte range, start Unix ms)) of each segment of a playlist.
fn numbered(text: &str) -> Vec<(u64, (String, String, i64))> {
    let mut msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no media sequence:\n{text}"));
    let (mut range, mut start) = (String::new(), 0);
    let mut out = Vec::new();
    for l in text.lines() {
        if let Some(r) = l.strip_prefix("#EXT-X-BYTERANGE:") {
            range = r.to_owned();
        } else if let Some(d) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            start = parse_iso8601(d);
        } else if !l.starts_with('#') && !l.is_empty() {
            out.push((msn, (l.to_owned(), range.clone(), start)));
            msn += 1;
        }
    }
    out
}

/// `2026-12-05T13:31:00.123Z` as Unix ms.
fn parse_iso8601(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (hh, mm, ss, ms) = (n(11, 13), n(14, 16), n(17, 19), n(20, 23));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms
}

/// Every file listed closed in `before` is in `after`, with the same size: a kill never
/// touches what was already closed.
fn assert_closed_files_kept(before: &[Value], after: &[Value]) {
    for a in before.iter().filter(|a| a["recording"] == false) {
        let b = after
            .iter()
            .find(|b| b["id"] == a["id"])
            .unwrap_or_else(|| panic!("{a:#} is gone after the restart: {after:#?}"));
        assert_eq!(a["bytes"], b["bytes"], "a closed file changed");
    }
}
