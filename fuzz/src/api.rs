//! REST API request bodies (`/api/v1/streams`): the JSON a client PUTs, POSTs or PATCHes,
//! through `api::fuzz_stream_body` (the handlers' steps before the store).

use store::{Failover, InputSpec, Protocols, PushDestination, RetryPolicy, StreamRecord};

/// Stream code in the request path.
const PATH_CODE: &str = "cam-1";

/// The stored stream PUT and PATCH find (or not).
fn existing() -> StreamRecord {
    StreamRecord {
        code: PATH_CODE.to_owned(),
        name: "Camera 1".to_owned(),
        description: "lobby".to_owned(),
        tags: vec!["lobby".to_owned()],
        stream_key: Some("k3y".to_owned()),
        disabled: false,
        protocols: Protocols::default(),
        push: vec![PushDestination {
            url: "rtmp://user:pw@a.example:1935/live/s3cret?token=t".to_owned(),
            enabled: true,
            timeout_s: 10,
            retry: RetryPolicy::default(),
            limit: 0,
            comment: String::new(),
            rendition: String::new(),
        }],
        inputs: vec![
            InputSpec {
                url: "rtsp://admin:pw@10.0.0.9:554/Streaming/101".to_owned(),
                ..InputSpec::default()
            },
            InputSpec {
                url: "publish://".to_owned(),
                priority: 1,
                ..InputSpec::default()
            },
        ],
        failover: Failover::default(),
        recording: Default::default(),
        transcode: Default::default(),
        created_at_ms: 1,
        updated_at_ms: 2,
    }
}

/// A JSON body through the POST / PUT / PATCH steps (`api::fuzz_stream_body`): never panics;
/// an accepted record passes `control::validate`, keeps the path's code (PUT, PATCH), survives
/// JSON as the store writes it, and PUT with the record itself as the body is accepted and
/// gives the same record (what a client that GETs, edits and PUTs back relies on).
///
/// Layout: `[bits 0-1: 0 POST, 1 PUT, else PATCH; bit 2: the stream exists][JSON body ...]`.
pub fn api_stream_body(data: &[u8]) {
    let [sel, body @ ..] = data else {
        return;
    };
    let method = ["POST", "PUT", "PATCH", "PATCH"][usize::from(sel & 3)];
    let old = (sel & 4 != 0).then(existing);
    let Ok(record) = api::fuzz_stream_body(method, PATH_CODE, body, old.as_ref()) else {
        return;
    };
    control::validate(&record).expect("an accepted record is valid");
    if method != "POST" {
        assert_eq!(record.code, PATH_CODE);
    }
    let stored = serde_json::to_string(&record).expect("a record serializes");
    let back: StreamRecord = serde_json::from_str(&stored).expect("a stored record loads");
    assert_eq!(back, record, "a record does not survive JSON");
    let mut again = serde_json::to_value(&record).expect("a record serializes");
    let fields = again.as_object_mut().expect("a record is a JSON object");
    fields.remove("created_at_ms");
    fields.remove("updated_at_ms");
    let again = serde_json::to_vec(&again).expect("JSON serializes");
    let put = api::fuzz_stream_body("PUT", &record.code, &again, Some(&record))
        .unwrap_or_else(|e| panic!("PUT of an accepted record refused: {e:?}"));
    assert_eq!(
        StreamRecord {
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            ..put
        },
        record,
        "PUT of an accepted record changed it"
    );
}
