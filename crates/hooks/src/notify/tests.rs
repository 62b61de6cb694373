use super::*;
use crate::test_server::{Reply, Request, TestServer, closed_port};
use std::net::{IpAddr, Ipv4Addr};

fn session() -> Session {
    Session {
        flashver: "FMLE/3.0 (compatible; FMSc/1.0)".into(),
        tcurl: "rtmp://127.0.0.1:1935/live".into(),
        epoch: 7,
        ..Session::new(
            "rtmp",
            "live",
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
            42,
        )
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const SESSION: [(&str, &str); 7] = [
    ("app", "live"),
    ("flashver", "FMLE/3.0 (compatible; FMSc/1.0)"),
    ("swfurl", ""),
    ("tcurl", "rtmp://127.0.0.1:1935/live"),
    ("pageurl", ""),
    ("addr", "203.0.113.9"),
    ("clientid", "42"),
];

fn config_for(server: &TestServer) -> NotifyConfig {
    NotifyConfig {
        on_connect: Some(server.url("/connect")),
        on_publish: Some(server.url("/publish")),
        on_play: Some(server.url("/play")),
        on_publish_done: Some(server.url("/publish_done")),
        on_play_done: Some(server.url("/play_done")),
        on_done: Some(server.url("/done")),
        on_disconnect: Some(server.url("/disconnect")),
        on_update: Some(server.url("/update")),
        timeout: Duration::from_secs(5),
        ..NotifyConfig::default()
    }
}

async fn one_call(event: HookEvent, args: &HookArgs, reply: Reply) -> (HookReply, Request) {
    let server = TestServer::start(reply).await;
    let notifier = Notifier::new(config_for(&server)).unwrap();
    let decision = notifier.decide(event, args).await;
    (decision, server.next().await)
}

fn assert_post_form(request: &Request, path: &str, expected: Vec<(String, String)>) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, path);
    assert_eq!(request.query, None);
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.form(), expected);
}

#[tokio::test]
async fn publish_posts_exactly_the_nginx_args() {
    let args = HookArgs::publish(&session(), "demo", "live", "token=abc&call=play");
    let (decision, request) = one_call(HookEvent::Publish, &args, Reply::status(200)).await;
    assert_eq!(decision, HookReply::Allow);
    let mut expected = pairs(&SESSION);
    expected.extend(pairs(&[
        ("call", "publish"),
        ("name", "demo"),
        ("type", "live"),
        ("protocol", "rtmp"),
        ("token", "abc"),
    ]));
    assert_post_form(&request, "/publish", expected);
}

#[tokio::test]
async fn play_posts_exactly_the_nginx_args() {
    let args = HookArgs::play(&session(), "demo", "token=xyz");
    let (decision, request) = one_call(HookEvent::Play, &args, Reply::status(204)).await;
    assert_eq!(decision, HookReply::Allow);
    let mut expected = pairs(&SESSION);
    expected.extend(pairs(&[
        ("call", "play"),
        ("name", "demo"),
        ("start", "0"),
        ("duration", "0"),
        ("reset", "0"),
        ("protocol", "rtmp"),
        ("token", "xyz"),
    ]));
    assert_post_form(&request, "/play", expected);
}

#[tokio::test]
async fn connect_posts_exactly_the_nginx_args() {
    let mut s = session();
    s.query = "token=fromapp".into();
    let args = HookArgs::connect(&s);
    let (decision, request) = one_call(HookEvent::Connect, &args, Reply::status(200)).await;
    assert_eq!(decision, HookReply::Allow);
    let expected = pairs(&[
        ("app", "live"),
        ("flashver", "FMLE/3.0 (compatible; FMSc/1.0)"),
        ("swfurl", ""),
        ("tcurl", "rtmp://127.0.0.1:1935/live"),
        ("pageurl", ""),
        ("addr", "203.0.113.9"),
        ("epoch", "7"),
        ("call", "connect"),
        ("protocol", "rtmp"),
        ("token", "fromapp"),
    ]);
    assert_post_form(&request, "/connect", expected);
}

#[tokio::test]
async fn update_posts_exactly_the_nginx_args() {
    let args = HookArgs::update(
        &session(),
        Role::Publish,
        "demo",
        Duration::from_secs(90),
        123_456,
        "token=abc",
    );
    let (decision, request) = one_call(HookEvent::Update, &args, Reply::status(200)).await;
    assert_eq!(decision, HookReply::Allow);
    let mut expected = pairs(&SESSION);
    expected.extend(pairs(&[
        ("call", "update_publish"),
        ("time", "90"),
        ("timestamp", "123456"),
        ("name", "demo"),
        ("protocol", "rtmp"),
        ("token", "abc"),
    ]));
    assert_post_form(&request, "/update", expected);
}

#[tokio::test]
async fn get_puts_the_args_in_the_query_after_the_configured_one() {
    let server = TestServer::start(Reply::status(200)).await;
    let config = NotifyConfig {
        on_publish: Some(server.url("/hook?secret=s3&x=a%20b")),
        method: NotifyMethod::Get,
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(config).unwrap();
    let args = HookArgs::publish(&session(), "demo", "live", "token=abc");
    assert_eq!(
        notifier.decide(HookEvent::Publish, &args).await,
        HookReply::Allow
    );
    let request = server.next().await;
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/hook");
    assert!(request.body.is_empty());
    let mut expected = pairs(&[("secret", "s3"), ("x", "a b")]);
    expected.extend(args.pairs().map(|(n, v)| (n.to_owned(), v.to_owned())));
    assert_eq!(request.query_pairs(), expected);
}

#[tokio::test]
async fn redirect_renames_with_a_bare_name_or_a_url() {
    let args = HookArgs::publish(&session(), "demo", "live", "");
    for (location, name) in [
        ("renamed", "renamed"),
        ("http://hooks.example/live/n%C3%A9?x=1", "né"),
        ("/live/from_path", "from_path"),
    ] {
        let reply = Reply::status(302).header("Location", location);
        let (decision, _) = one_call(HookEvent::Publish, &args, reply).await;
        assert_eq!(decision, HookReply::Redirect(name.into()), "{location}");
    }
    let connect = HookArgs::connect(&session());
    let reply = Reply::status(301).header("Location", "otherapp");
    let (decision, _) = one_call(HookEvent::Connect, &connect, reply).await;
    assert_eq!(decision, HookReply::Redirect("otherapp".into()));
    // on_connect has no relay: an rtmp:// URL renames the app to its last segment.
    let reply = Reply::status(302).header("Location", "rtmp://origin.example/app2");
    let (decision, _) = one_call(HookEvent::Connect, &connect, reply).await;
    assert_eq!(decision, HookReply::Redirect("app2".into()));
}

#[tokio::test]
async fn rtmp_location_is_a_relay_for_publish_and_play() {
    let publish = HookArgs::publish(&session(), "demo", "live", "");
    let play = HookArgs::play(&session(), "demo", "");
    for (event, args) in [(HookEvent::Publish, &publish), (HookEvent::Play, &play)] {
        for location in [
            "rtmp://origin.example/live/src",
            "RTMP://origin.example:1936/app/key?token=1",
            " rtmps://edge.example/live/x ",
        ] {
            let reply = Reply::status(302).header("Location", location);
            let (decision, _) = one_call(event, args, reply).await;
            assert_eq!(
                decision,
                HookReply::Relay(location.trim().into()),
                "{location}"
            );
        }
    }
    assert_eq!(
        url_host("rtmp://u:p@h.example:1935/app/key?x"),
        "rtmp://h.example:1935"
    );
}

#[tokio::test]
async fn redirect_without_location_or_to_a_bad_name_refuses() {
    let args = HookArgs::play(&session(), "demo", "");
    let (decision, _) = one_call(HookEvent::Play, &args, Reply::status(302)).await;
    assert_eq!(
        decision,
        HookReply::Refuse("on_play returned 302 without Location".into())
    );
    for location in ["http://origin.example", "/live/", "a/b?c", "..", "%2E%2E"] {
        let reply = Reply::status(307).header("Location", location);
        let (decision, _) = one_call(HookEvent::Play, &args, reply).await;
        assert_eq!(
            decision,
            HookReply::Refuse("on_play redirected to an invalid name".into()),
            "{location}"
        );
    }
}

#[tokio::test]
async fn client_and_server_errors_refuse_with_the_status() {
    let args = HookArgs::publish(&session(), "demo", "live", "");
    for status in [400, 403, 404, 500, 503] {
        let (decision, _) = one_call(HookEvent::Publish, &args, Reply::status(status)).await;
        assert_eq!(
            decision,
            HookReply::Refuse(format!("on_publish returned {status}"))
        );
    }
}

#[tokio::test]
async fn update_strictness_decides_about_3xx() {
    let args = HookArgs::update(&session(), Role::Play, "demo", Duration::ZERO, 0, "");
    let (lenient, _) = one_call(HookEvent::Update, &args, Reply::status(302)).await;
    assert_eq!(lenient, HookReply::Allow);
    let (error, _) = one_call(HookEvent::Update, &args, Reply::status(500)).await;
    assert_eq!(error, HookReply::Refuse("on_update returned 500".into()));

    let server = TestServer::start(Reply::status(302)).await;
    let notifier = Notifier::new(NotifyConfig {
        update_strict: true,
        ..config_for(&server)
    })
    .unwrap();
    assert_eq!(
        notifier.decide(HookEvent::Update, &args).await,
        HookReply::Refuse("on_update returned 302".into())
    );
}

#[tokio::test]
async fn a_slow_hook_refuses_within_the_timeout() {
    let server = TestServer::start(Reply::status(200).delay(Duration::from_secs(30))).await;
    let notifier = Notifier::new(NotifyConfig {
        timeout: Duration::from_millis(300),
        ..config_for(&server)
    })
    .unwrap();
    let started = std::time::Instant::now();
    let args = HookArgs::publish(&session(), "demo", "live", "");
    let decision = notifier.decide(HookEvent::Publish, &args).await;
    assert_eq!(decision, HookReply::Refuse("on_publish timed out".into()));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_hook_refuses() {
    let port = closed_port().await;
    let notifier = Notifier::new(NotifyConfig {
        on_publish: Some(format!("http://127.0.0.1:{port}/hook?secret=abc")),
        ..NotifyConfig::default()
    })
    .unwrap();
    let args = HookArgs::publish(&session(), "demo", "live", "");
    match notifier.decide(HookEvent::Publish, &args).await {
        HookReply::Refuse(reason) => {
            assert!(reason.starts_with("on_publish unreachable: "), "{reason}");
            assert!(!reason.contains("secret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_url_allows_without_a_call() {
    let notifier = Notifier::new(NotifyConfig::default()).unwrap();
    let args = HookArgs::publish(&session(), "demo", "live", "");
    assert!(!notifier.enabled(HookEvent::Publish));
    assert_eq!(
        notifier.decide(HookEvent::Publish, &args).await,
        HookReply::Allow
    );
    notifier.notify(
        HookEvent::PublishDone,
        HookArgs::done(&session(), "demo", ""),
    );
    assert_eq!((notifier.in_flight(), notifier.dropped()), (0, 0));
}

#[tokio::test]
async fn notify_delivers_and_close_waits_for_it() {
    let server = TestServer::start(Reply::status(500).delay(Duration::from_millis(200))).await;
    let notifier = Notifier::new(config_for(&server)).unwrap();
    let s = session();
    notifier.notify(
        HookEvent::PublishDone,
        HookArgs::publish_done(&s, "demo", ""),
    );
    notifier.notify(HookEvent::Done, HookArgs::done(&s, "demo", ""));
    notifier.notify(HookEvent::Disconnect, HookArgs::disconnect(&s));
    notifier.close().await;
    assert_eq!(
        notifier.in_flight(),
        0,
        "close returned before the calls ended"
    );
    let mut calls: Vec<(String, String)> = server
        .drain()
        .await
        .iter()
        .map(|r| (r.path.clone(), r.form()[7].1.clone()))
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        pairs(&[
            ("/disconnect", "disconnect"),
            ("/done", "done"),
            ("/publish_done", "publish_done"),
        ])
    );
    notifier.notify(HookEvent::Done, HookArgs::done(&s, "demo", ""));
    assert_eq!(notifier.dropped(), 1, "closed notifier drops");
}

#[tokio::test]
async fn notify_over_the_bound_is_dropped_and_counted() {
    let server = TestServer::start(Reply::status(200).delay(Duration::from_millis(300))).await;
    let notifier = Notifier::with_limit(config_for(&server), 2).unwrap();
    for _ in 0..5 {
        notifier.notify(HookEvent::Done, HookArgs::done(&session(), "demo", ""));
    }
    assert_eq!(notifier.dropped(), 3);
    notifier.close().await;
    assert_eq!(server.drain().await.len(), 2);
}

#[test]
fn config_errors_name_the_field() {
    let bad = NotifyConfig {
        on_play_done: Some("ftp://example/hook".into()),
        ..NotifyConfig::default()
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.starts_with("on_play_done: "), "{err}");
    assert!(Notifier::new(bad).is_err());

    let relative = NotifyConfig {
        on_connect: Some("/hooks/connect".into()),
        ..NotifyConfig::default()
    };
    assert!(
        relative
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("on_connect: ")
    );

    let no_timeout = NotifyConfig {
        timeout: Duration::ZERO,
        ..NotifyConfig::default()
    };
    assert!(
        no_timeout
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("timeout: ")
    );
    assert!(NotifyConfig::default().validate().is_ok());
}

#[test]
fn url_and_names_per_event() {
    let config = NotifyConfig {
        on_update: Some("http://h/u".into()),
        ..NotifyConfig::default()
    };
    assert_eq!(config.url(HookEvent::Update), Some("http://h/u"));
    assert_eq!(config.url(HookEvent::Publish), None);
    let calls: Vec<_> = HookEvent::ALL.iter().map(|e| e.call()).collect();
    assert_eq!(
        calls,
        [
            "connect",
            "publish",
            "play",
            "publish_done",
            "play_done",
            "done",
            "disconnect",
            "update",
            "record_done"
        ]
    );
    for e in HookEvent::ALL {
        assert_eq!(e.directive(), format!("on_{}", e.call()));
    }
}

#[test]
fn redirect_names() {
    assert_eq!(redirect_name(" plain "), Some("plain".into()));
    assert_eq!(
        redirect_name("rtmp://h:1935/app/inst/key"),
        Some("key".into())
    );
    assert_eq!(redirect_name("https://h/a/b#frag"), Some("b".into()));
    for bad in [
        "",
        "rtmp://h",
        "rtmp://h/",
        "with space",
        "a?b",
        "%ZZ",
        "/x/%00",
        ".",
    ] {
        assert_eq!(redirect_name(bad), None, "{bad:?}");
    }
    assert_eq!(redirect_name(&"n".repeat(257)), None);
}

/// nginx-rtmp's `notify_update_strict off`, as documented in config.example.yaml: an update
/// that timed out or found no server keeps the session; with strict on it ends it.
#[tokio::test]
async fn nginx_rtmp_update_strict_off_survives_a_failed_or_timed_out_update() {
    let args = HookArgs::update(&session(), Role::Publish, "demo", Duration::ZERO, 0, "");
    let slow = TestServer::start(Reply::status(200).delay(Duration::from_secs(30))).await;
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/update", l.local_addr().unwrap())
    };
    for (url, what) in [
        (slow.url("/update"), "timed out"),
        (unreachable, "unreachable"),
    ] {
        for strict in [false, true] {
            let notifier = Notifier::new(NotifyConfig {
                on_update: Some(url.clone()),
                timeout: Duration::from_millis(300),
                update_strict: strict,
                ..NotifyConfig::default()
            })
            .unwrap();
            let reply = notifier.decide(HookEvent::Update, &args).await;
            if strict {
                assert!(
                    matches!(reply, HookReply::Refuse(_)),
                    "{what}, strict: {reply:?}"
                );
            } else {
                assert_eq!(reply, HookReply::Allow, "{what}, lenient");
            }
        }
    }
}
