use crate::*;

fn kill(code: &str) -> Command {
    Command::KillSession { code: code.into() }
}

fn close(code: &str, id: &str) -> Command {
    Command::CloseStream {
        code: code.into(),
        stream_id: id.into(),
    }
}

#[test]
fn parse_valid() {
    let table = [
        ("kill-session>live1", kill("live1")),
        ("close-stream>live1|4f2a-99", close("live1", "4f2a-99")),
        // Whitespace around any part, e.g. from `redis-cli PUBLISH ch " kill-session> x "`.
        ("  kill-session > live1 \n", kill("live1")),
        ("close-stream> live1 | abc ", close("live1", "abc")),
        // Extra arguments are ignored, as AgustinSRG's server does.
        ("kill-session>live1|extra", kill("live1")),
        ("close-stream>live1|abc|extra", close("live1", "abc")),
        ("kill-session>ünïcode_ok", kill("ünïcode_ok")),
    ];
    for (msg, want) in table {
        assert_eq!(parse(msg), Ok(want.clone()), "{msg:?}");
        assert_eq!(parse_bytes(msg.as_bytes()), Ok(want), "{msg:?}");
    }
}

#[test]
fn display_round_trips() {
    for c in [kill("a-b_c"), close("x", "y")] {
        assert_eq!(parse(&c.to_string()), Ok(c.clone()));
    }
    assert_eq!(close("x", "y").code(), "x");
}

#[test]
fn parse_invalid() {
    use ParseError::*;
    let missing_code = |command| MissingArgument {
        command,
        argument: "stream code",
    };
    let table: Vec<(String, ParseError)> = vec![
        ("".into(), MissingSeparator),
        ("kill-session".into(), MissingSeparator),
        ("kill-session live1".into(), MissingSeparator),
        ("kill-session>".into(), missing_code("kill-session")),
        ("kill-session>   ".into(), missing_code("kill-session")),
        ("kill-session>|x".into(), missing_code("kill-session")),
        ("close-stream>|x".into(), missing_code("close-stream")),
        (
            "close-stream>live1".into(),
            MissingArgument {
                command: "close-stream",
                argument: "stream id",
            },
        ),
        (
            "close-stream>live1| ".into(),
            MissingArgument {
                command: "close-stream",
                argument: "stream id",
            },
        ),
        (
            ">live1".into(),
            UnknownCommand {
                name: String::new(),
            },
        ),
        (
            "drop-table>live1".into(),
            UnknownCommand {
                name: "drop-table".into(),
            },
        ),
        // Case-sensitive, like AgustinSRG's Go server.
        (
            "Kill-Session>live1".into(),
            UnknownCommand {
                name: "Kill-Session".into(),
            },
        ),
        (
            "kill-session>a>b".into(),
            InvalidArgument {
                command: "kill-session",
                argument: "stream code",
                reason: "contains whitespace or '>'",
            },
        ),
        (
            "kill-session>a b".into(),
            InvalidArgument {
                command: "kill-session",
                argument: "stream code",
                reason: "contains whitespace or '>'",
            },
        ),
        (
            "kill-session>a\u{0}b".into(),
            InvalidArgument {
                command: "kill-session",
                argument: "stream code",
                reason: "contains control characters",
            },
        ),
        (
            "close-stream>a|b\u{7f}".into(),
            InvalidArgument {
                command: "close-stream",
                argument: "stream id",
                reason: "contains control characters",
            },
        ),
        (
            format!("kill-session>{}", "x".repeat(MAX_ID_LEN + 1)),
            InvalidArgument {
                command: "kill-session",
                argument: "stream code",
                reason: "longer than 128 characters",
            },
        ),
        (
            format!("kill-session>{}", "x".repeat(MAX_MESSAGE_LEN)),
            TooLong {
                len: MAX_MESSAGE_LEN + 13,
            },
        ),
    ];
    for (msg, want) in table {
        assert_eq!(parse(&msg), Err(want.clone()), "{msg:?}");
        assert_eq!(parse_bytes(msg.as_bytes()), Err(want), "{msg:?}");
    }
    // Exactly at the limits is fine.
    let code = "x".repeat(MAX_ID_LEN);
    assert_eq!(parse(&format!("kill-session>{code}")), Ok(kill(&code)));
    let padded = format!("kill-session>x{}", " ".repeat(MAX_MESSAGE_LEN - 14));
    assert_eq!(padded.len(), MAX_MESSAGE_LEN);
    assert_eq!(parse(&padded), Ok(kill("x")));
}

#[test]
fn parse_bytes_rejects_before_decoding() {
    assert_eq!(
        parse_bytes(&[0xff; MAX_MESSAGE_LEN + 1]),
        Err(ParseError::TooLong {
            len: MAX_MESSAGE_LEN + 1
        })
    );
    assert_eq!(
        parse_bytes(b"kill-session>\xff\xfe"),
        Err(ParseError::NotUtf8)
    );
}

#[test]
fn unknown_command_name_is_cut_for_logs() {
    let msg = format!("{}>x", "n".repeat(500));
    match parse(&msg) {
        Err(ParseError::UnknownCommand { name }) => assert_eq!(name.len(), 64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn listener_rejects_bad_config() {
    let sink: std::sync::Arc<dyn CommandSink> = std::sync::Arc::new(|_c: Command| {});
    let err = Listener::new(RedisConfig::new("http://:pw@x/"), sink.clone())
        .err()
        .unwrap();
    assert!(matches!(err, ConfigError::InvalidUrl { .. }), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
    let mut cfg = RedisConfig::new("redis://127.0.0.1:1");
    cfg.channel.clear();
    assert_eq!(
        Listener::new(cfg, sink).err().unwrap(),
        ConfigError::EmptyChannel
    );
}
