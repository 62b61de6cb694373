//! The conformance suite every [`Store`] implementation must pass. Compiled for this crate's
//! tests and, with the `test-suite` feature, for other crates' (e.g. an in-memory fake).

use futures_util::future::join_all;

use crate::{
    AudioMode, Corner, Failover, HwAccel, InputSpec, Protocols, PushDestination, PutOutcome,
    RecordingFormat, RecordingSpec, RenditionSpec, RetryPolicy, RtspTransport, Store, StoreError,
    StreamRecord, TextOverlay, TranscodeAudio, TranscodeSpec, Watermark,
};

/// A record with every field set to something non-default.
pub fn sample(code: &str) -> StreamRecord {
    StreamRecord {
        code: code.to_owned(),
        name: format!("Stream {code}"),
        description: "line one\nline two, with 'quotes' and \"double quotes\"".to_owned(),
        tags: vec!["news".to_owned(), "Käse 🧀".to_owned(), "日本語".to_owned()],
        stream_key: Some("s3cr3t-key".to_owned()),
        disabled: true,
        protocols: Protocols {
            hls: true,
            dash: false,
            rtmp: true,
            srt: false,
            rtsp: false,
            mpegts: true,
        },
        push: vec![
            PushDestination {
                url: "rtmp://a.example/live/key1".to_owned(),
                enabled: true,
                timeout_s: 10,
                retry: RetryPolicy::default(),
                limit: 0,
                comment: "primary".to_owned(),
                rendition: "480p".to_owned(),
            },
            PushDestination {
                url: "rtmps://b.example:443/app/key2?x=1&y=2".to_owned(),
                enabled: false,
                timeout_s: 3,
                retry: RetryPolicy {
                    initial_s: 0.5,
                    max_s: 120.25,
                },
                limit: 7,
                comment: String::new(),
                rendition: String::new(),
            },
        ],
        inputs: vec![
            InputSpec {
                url: "rtsp://user:pa%40ss@cam.example:554/stream1".to_owned(),
                priority: 0,
                enabled: true,
                rtsp_transport: RtspTransport::Udp,
                comment: "lobby camera".to_owned(),
            },
            InputSpec {
                url: "publish://".to_owned(),
                priority: 5,
                enabled: false,
                rtsp_transport: RtspTransport::Tcp,
                comment: String::new(),
            },
        ],
        failover: Failover {
            packet_timeout_s: 1.5,
            failback_after_s: 20.0,
            on_demand: true,
            close_after_s: 3.0,
            retry: RetryPolicy {
                initial_s: 0.25,
                max_s: 5.0,
            },
        },
        recording: RecordingSpec {
            enabled: true,
            format: RecordingFormat::Ts,
            rotate_s: 30.5,
            rotate_bytes: 64 << 20,
            max_age_s: 7.0 * 86_400.0,
            max_bytes: 10 << 30,
            schedule: vec!["22:00-06:30".into()],
        },
        transcode: sample_transcode(),
        created_at_ms: 1_763_700_000_000,
        updated_at_ms: 1_763_700_000_500,
    }
}

/// A three-rung ladder (the source, a preset, a custom rung) with every other setting
/// non-default, a watermark and text.
pub fn sample_transcode() -> TranscodeSpec {
    TranscodeSpec {
        enabled: true,
        profiles: vec![
            RenditionSpec {
                name: "source".to_owned(),
                ..RenditionSpec::default()
            },
            RenditionSpec {
                name: "480p".to_owned(),
                ..RenditionSpec::default()
            },
            RenditionSpec {
                name: "270p".to_owned(),
                height: 270,
                video_bitrate_kbps: 500,
                ..RenditionSpec::default()
            },
        ],
        hwaccel: HwAccel::Nvenc,
        keyframe_interval_s: 1.5,
        audio: TranscodeAudio {
            mode: AudioMode::Aac,
            bitrate_kbps: 96,
        },
        watermark: Some(Watermark {
            path: "/srv/logo's.png".to_owned(),
            position: Corner::BottomRight,
            opacity: 0.25,
            margin: 8,
        }),
        text: Some(TextOverlay {
            text: "Käse \"live\" 🧀".to_owned(),
            timestamp: false,
            position: Corner::TopLeft,
            font_size: 40,
        }),
    }
}

/// A record with the "empty" choices: no key, no tags, no push, defaults.
pub fn minimal(code: &str) -> StreamRecord {
    StreamRecord {
        code: code.to_owned(),
        name: String::new(),
        description: String::new(),
        tags: Vec::new(),
        stream_key: None,
        disabled: false,
        protocols: Protocols::default(),
        push: Vec::new(),
        inputs: Vec::new(),
        failover: Failover::default(),
        recording: RecordingSpec::default(),
        transcode: TranscodeSpec::default(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

/// Runs every check against `store`, which must start empty; it is left empty again. Panics
/// with the store's kind and the failed check.
pub async fn conformance(store: &dyn Store) {
    let kind = store.kind();
    store
        .ping()
        .await
        .unwrap_or_else(|e| panic!("{kind}: ping: {e}"));

    // Empty store.
    assert_eq!(
        store.list().await.expect("list empty"),
        Vec::new(),
        "{kind}: list on empty"
    );
    assert_eq!(
        store.get("nope").await.expect("get missing"),
        None,
        "{kind}: get missing"
    );
    assert!(
        !store.delete("nope").await.expect("delete missing"),
        "{kind}: delete missing"
    );

    // Round trip of every field, both shapes.
    let full = sample("full");
    let bare = minimal("bare");
    store.insert(&full).await.expect("insert full");
    store.insert(&bare).await.expect("insert bare");
    assert_eq!(
        store.get("full").await.expect("get full"),
        Some(full.clone()),
        "{kind}: full"
    );
    assert_eq!(
        store.get("bare").await.expect("get bare"),
        Some(bare.clone()),
        "{kind}: bare"
    );

    // Insert of a taken code is a conflict and changes nothing.
    let mut dup = minimal("full");
    dup.name = "intruder".to_owned();
    match store.insert(&dup).await {
        Err(StoreError::Conflict(code)) => assert_eq!(code, "full", "{kind}: conflict code"),
        other => panic!("{kind}: duplicate insert gave {other:?}"),
    }
    assert_eq!(
        store.get("full").await.expect("get after conflict"),
        Some(full.clone())
    );

    // Ordering is byte-wise by code, whatever the database collation: upper case before
    // lower case, '-' before digits before '_'.
    for code in ["b", "B", "a_1", "a-1", "a1", "Z9"] {
        store
            .insert(&minimal(code))
            .await
            .expect("insert for ordering");
    }
    let codes: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.code)
        .collect();
    let mut expected = codes.clone();
    expected.sort();
    assert_eq!(codes, expected, "{kind}: list order");
    assert_eq!(
        codes,
        ["B", "Z9", "a-1", "a1", "a_1", "b", "bare", "full"],
        "{kind}: list contents"
    );
    assert_eq!(
        store.list().await.expect("list")[7],
        full,
        "{kind}: list decodes"
    );

    // put: Created, then Replaced keeping created_at and taking everything else.
    let first = minimal("put");
    assert_eq!(
        store.put(&first).await.expect("put new"),
        PutOutcome::Created,
        "{kind}"
    );
    let mut second = sample("put");
    second.created_at_ms = first.created_at_ms + 99_999;
    second.updated_at_ms = first.updated_at_ms + 123_456;
    assert_eq!(
        store.put(&second).await.expect("put again"),
        PutOutcome::Replaced,
        "{kind}"
    );
    let stored = store
        .get("put")
        .await
        .expect("get put")
        .expect("put stored");
    let mut want = second.clone();
    want.created_at_ms = first.created_at_ms;
    assert_eq!(
        stored, want,
        "{kind}: replace keeps created_at, updates the rest"
    );
    // And back to the bare shape: nullable and empty values overwrite set ones.
    let mut third = minimal("put");
    third.updated_at_ms = second.updated_at_ms + 1;
    assert_eq!(
        store.put(&third).await.expect("put 3"),
        PutOutcome::Replaced,
        "{kind}"
    );
    assert_eq!(
        store
            .get("put")
            .await
            .expect("get put")
            .expect("put stored"),
        third
    );

    // Concurrent puts of one new code: exactly one creates it.
    let racers: Vec<StreamRecord> = (0..8)
        .map(|i| {
            let mut r = sample("race");
            r.name = format!("racer {i}");
            r.updated_at_ms += i;
            r
        })
        .collect();
    // Polled together on one task, each on its own pooled connection: the race happens in
    // the database, which is what matters.
    let outcomes = join_all(racers.iter().map(|r| store.put(r))).await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PutOutcome::Created)))
        .count();
    let replaced = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PutOutcome::Replaced)))
        .count();
    assert_eq!(
        (created, replaced),
        (1, 7),
        "{kind}: concurrent puts {outcomes:?}"
    );
    let winner = store
        .get("race")
        .await
        .expect("get race")
        .expect("race stored");
    assert!(
        racers.iter().any(|r| r.name == winner.name),
        "{kind}: race result is one put"
    );

    // Delete: true once, then false; the record is gone.
    assert!(
        store.delete("full").await.expect("delete"),
        "{kind}: delete existing"
    );
    assert!(
        !store.delete("full").await.expect("delete again"),
        "{kind}: delete twice"
    );
    assert_eq!(
        store.get("full").await.expect("get deleted"),
        None,
        "{kind}: deleted"
    );

    // Leave the store as found.
    for record in store.list().await.expect("list") {
        assert!(
            store.delete(&record.code).await.expect("cleanup"),
            "{kind}: cleanup"
        );
    }
    assert!(
        store.list().await.expect("list").is_empty(),
        "{kind}: empty at end"
    );
}
