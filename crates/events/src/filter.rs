//! Which events a sink takes: by type (`stream.started`, `input.*`) and by stream code
//! (`cam1`, `cam-*`). An empty list takes everything.

use crate::{Event, EventKind};

/// One entry of a filter list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// The whole value.
    Exact(String),
    /// A value starting with this (written with a trailing `*`).
    Prefix(String),
}

impl Pattern {
    fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(v) => v == value,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }

    fn parse(raw: &str) -> Pattern {
        match raw.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(raw.to_owned()),
        }
    }
}

/// Why a filter entry was refused; `index` is its position in its list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{list}[{index}]: {reason}")]
pub struct FilterError {
    /// `events` or `streams`.
    pub list: &'static str,
    /// Position of the bad entry.
    pub index: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Most entries in one list: a filter is a choice, not a catalogue.
const MAX_ENTRIES: usize = 256;

/// The compiled filters of one sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    types: Vec<Pattern>,
    streams: Vec<Pattern>,
}

impl Filter {
    /// Checks and compiles the two lists. An event type entry is a known type or a prefix
    /// ending in `*` (`input.*`, `*`) that matches at least one; a stream entry is a code or a
    /// code prefix ending in `*`.
    pub fn new(types: &[String], streams: &[String]) -> Result<Filter, FilterError> {
        let bad = |list, index, reason: String| FilterError {
            list,
            index,
            reason,
        };
        if types.len() > MAX_ENTRIES {
            return Err(bad(
                "events",
                MAX_ENTRIES,
                format!("at most {MAX_ENTRIES} entries"),
            ));
        }
        if streams.len() > MAX_ENTRIES {
            return Err(bad(
                "streams",
                MAX_ENTRIES,
                format!("at most {MAX_ENTRIES} entries"),
            ));
        }
        let mut out = Filter::default();
        for (i, raw) in types.iter().enumerate() {
            let p = Pattern::parse(raw);
            let known = EventKind::ALL.iter().any(|k| p.matches(k.as_str()));
            if raw.is_empty() || raw.strip_suffix('*').unwrap_or(raw).contains('*') || !known {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(bad(
                    "events",
                    i,
                    format!(
                        "{raw:?} is not an event type or a prefix of one like \"input.*\" (types: {})",
                        names.join(", ")
                    ),
                ));
            }
            out.types.push(p);
        }
        for (i, raw) in streams.iter().enumerate() {
            let p = Pattern::parse(raw);
            let ok = match &p {
                Pattern::Exact(code) => hub::valid_code(code),
                // `region/*` takes a whole namespace.
                Pattern::Prefix(prefix) => {
                    prefix.is_empty() || hub::valid_code(prefix.strip_suffix('/').unwrap_or(prefix))
                }
            };
            if !ok {
                return Err(bad(
                    "streams",
                    i,
                    format!("{raw:?} is not a stream code or a code prefix ending in \"*\""),
                ));
            }
            out.streams.push(p);
        }
        Ok(out)
    }

    /// Whether the sink takes `event`. With stream entries, an event about no stream is not
    /// taken: the sink asked for certain streams only.
    pub fn matches(&self, event: &Event) -> bool {
        let type_ok =
            self.types.is_empty() || self.types.iter().any(|p| p.matches(event.kind.as_str()));
        let stream_ok = self.streams.is_empty()
            || event
                .stream
                .as_deref()
                .is_some_and(|s| self.streams.iter().any(|p| p.matches(s)));
        type_ok && stream_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventBus;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ev(kind: EventKind, stream: Option<&str>) -> Event {
        EventBus::default().make(kind, stream, json!({}))
    }

    #[test]
    fn empty_lists_take_everything() {
        let f = Filter::new(&[], &[]).unwrap();
        for k in EventKind::ALL {
            assert!(f.matches(&ev(k, None)));
            assert!(f.matches(&ev(k, Some("x"))));
        }
    }

    #[test]
    fn types_match_exactly_or_by_prefix() {
        let f = Filter::new(&strings(&["stream.started", "input.*"]), &[]).unwrap();
        assert!(f.matches(&ev(EventKind::StreamStarted, Some("a"))));
        assert!(!f.matches(&ev(EventKind::StreamStopped, Some("a"))));
        assert!(f.matches(&ev(EventKind::InputDown, None)));
        assert!(f.matches(&ev(EventKind::InputSwitched, Some("a"))));
        assert!(!f.matches(&ev(EventKind::SessionOpened, Some("a"))));
        let all = Filter::new(&strings(&["*"]), &[]).unwrap();
        assert!(all.matches(&ev(EventKind::PushState, None)));
    }

    #[test]
    fn streams_match_codes_and_prefixes_and_never_streamless_events() {
        let f = Filter::new(&[], &strings(&["cam1", "lobby-*"])).unwrap();
        assert!(f.matches(&ev(EventKind::StreamStarted, Some("cam1"))));
        assert!(!f.matches(&ev(EventKind::StreamStarted, Some("cam10"))));
        assert!(f.matches(&ev(EventKind::SessionClosed, Some("lobby-3"))));
        assert!(!f.matches(&ev(EventKind::SessionClosed, Some("lobby"))));
        assert!(!f.matches(&ev(EventKind::PushState, None)));
        let both = Filter::new(&strings(&["session.*"]), &strings(&["cam1"])).unwrap();
        assert!(both.matches(&ev(EventKind::SessionOpened, Some("cam1"))));
        assert!(!both.matches(&ev(EventKind::StreamStarted, Some("cam1"))));
        assert!(!both.matches(&ev(EventKind::SessionOpened, Some("cam2"))));
    }

    #[test]
    fn bad_entries_are_named_by_list_and_index() {
        for (types, streams, list, index) in [
            (vec!["stream.started", "stream.start"], vec![], "events", 1),
            (vec!["bogus.*"], vec![], "events", 0),
            (vec!["in*put.*"], vec![], "events", 0),
            (vec![""], vec![], "events", 0),
            (vec!["é"], vec![], "events", 0),
            (vec![], vec!["ok", "a b"], "streams", 1),
            (vec![], vec!["a//b*"], "streams", 0),
            (vec![], vec!["/a*"], "streams", 0),
            (vec![], vec![""], "streams", 0),
        ] {
            let err = Filter::new(&strings(&types), &strings(&streams)).unwrap_err();
            assert_eq!((err.list, err.index), (list, index), "{err}");
        }
        let many: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        assert_eq!(Filter::new(&[], &many).unwrap_err().list, "streams");
        // Every known type and a bare "*" stream prefix pass.
        let all: Vec<String> = EventKind::ALL.iter().map(|k| k.as_str().into()).collect();
        assert!(Filter::new(&all, &strings(&["*"])).is_ok());
        // Namespaced codes, whole or by namespace.
        assert!(Filter::new(&[], &strings(&["region/north/news", "region/*", "reg*"])).is_ok());
    }
}
