use std::net::IpAddr;
use std::sync::{Arc, Barrier};

use crate::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn parse_table() {
    // (input, canonical display, prefix)
    let ok = [
        ("1.2.3.4", "1.2.3.4", 32),
        ("1.2.3.4/32", "1.2.3.4", 32),
        ("10.0.0.0/8", "10.0.0.0/8", 8),
        ("10.1.2.3/8", "10.0.0.0/8", 8),
        ("0.0.0.0/0", "0.0.0.0/0", 0),
        ("192.168.7.9/0", "0.0.0.0/0", 0),
        ("::1", "::1", 128),
        ("::1/128", "::1", 128),
        ("2001:db8::/32", "2001:db8::/32", 32),
        ("2001:db8:ffff::1/32", "2001:db8::/32", 32),
        ("::/0", "::/0", 0),
        ("::ffff:0:0/96", "::ffff:0.0.0.0/96", 96),
    ];
    for (input, shown, prefix) in ok {
        let n: IpNet = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(n.to_string(), shown, "{input}");
        assert_eq!(n.prefix_len(), prefix, "{input}");
    }
}

#[test]
fn parse_errors_name_the_entry() {
    let bad = [
        "300.1.1.1",
        "10.0.0.0/33",
        "::1/129",
        "abc",
        "1.2.3",
        "10.0.0.0/",
        "/8",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        " 10.0.0.0/8",
        "10.0.0.0/0008",
        "*",
    ];
    for input in bad {
        let err = input.parse::<IpNet>().expect_err(input);
        assert!(err.to_string().contains(input), "{input}: {err}");
    }
    assert_eq!("".parse::<IpNet>(), Err(IpNetError::Empty));
    assert_eq!(
        "10.0.0.0/33".parse::<IpNet>(),
        Err(IpNetError::Prefix {
            input: "10.0.0.0/33".into(),
            max: 32
        })
    );
}

#[test]
fn contains_edges() {
    let n = net("10.0.0.0/8");
    assert!(n.contains(ip("10.0.0.0")));
    assert!(n.contains(ip("10.255.255.255")));
    assert!(!n.contains(ip("11.0.0.0")));
    assert!(!n.contains(ip("9.255.255.255")));
    assert!(!n.contains(ip("::1")));

    assert!(net("0.0.0.0/0").contains(ip("255.255.255.255")));
    assert!(!net("0.0.0.0/0").contains(ip("::1")));
    assert!(net("::/0").contains(ip("2001:db8::1")));
    assert!(!net("::/0").contains(ip("1.2.3.4")));

    let host = net("1.2.3.4");
    assert!(host.contains(ip("1.2.3.4")));
    assert!(!host.contains(ip("1.2.3.5")));
    let v6host = net("::1");
    assert!(v6host.contains(ip("::1")));
    assert!(!v6host.contains(ip("::2")));
    assert!(!v6host.contains(ip("0.0.0.1")));

    let doc = net("2001:db8::/32");
    assert!(doc.contains(ip("2001:db8:ffff:ffff::1")));
    assert!(!doc.contains(ip("2001:db9::1")));
}

#[test]
fn mapped_v6_matches_v4_rules() {
    assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
    assert!(!net("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
    assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
    // An IPv4-compatible (deprecated, not mapped) address is not an IPv4 client.
    assert!(!net("0.0.0.1").contains(ip("::1")));
    assert!(!net("10.0.0.0/8").contains(ip("::10.1.2.3")));
    // The mapped range written as IPv6 still matches as IPv6.
    assert!(net("::ffff:0:0/96").contains(ip("::ffff:1.2.3.4")));
    // The reverse is not supported: a v4 client never matches a v6 rule.
    assert!(!net("::ffff:0:0/96").contains(ip("1.2.3.4")));
}

#[test]
fn list_parsing() {
    let l = IpList::parse_str("10.0.0.0/8,::1").unwrap();
    assert_eq!(l.nets().len(), 2);
    assert!(l.contains(ip("10.9.9.9")));
    assert!(l.contains(ip("::1")));
    assert!(l.contains(ip("::ffff:10.0.0.1")));
    assert!(!l.contains(ip("192.168.0.1")));
    assert_eq!(l.to_string(), "10.0.0.0/8,::1");

    let spaced = IpList::parse_str(" 10.0.0.0/8 , ::1  127.0.0.1,").unwrap();
    assert_eq!(spaced.nets().len(), 3);

    let any = IpList::parse_str("*").unwrap();
    assert!(any.is_any() && !any.is_empty());
    assert!(any.contains(ip("8.8.8.8")) && any.contains(ip("2001:db8::1")));
    assert_eq!(any.to_string(), "*");
    let any_mixed = IpList::parse(["10.0.0.0/8", "*"]).unwrap();
    assert!(any_mixed.is_any());
    assert_eq!(any_mixed, IpList::any());

    let err = IpList::parse_str("10.0.0.0/8,300.1.1.1,::1").unwrap_err();
    assert!(err.to_string().contains("\"300.1.1.1\""), "{err}");
    assert!(IpList::parse(["abc"]).is_err());
}

#[test]
fn empty_list_semantics() {
    for l in [
        IpList::parse_str("").unwrap(),
        IpList::parse_str(" , ").unwrap(),
        IpList::parse(Vec::<String>::new()).unwrap(),
        IpList::empty(),
    ] {
        assert!(l.is_empty() && !l.is_any());
        assert!(!l.contains(ip("1.2.3.4")), "an empty set contains nobody");
        assert!(
            l.allows(ip("1.2.3.4")),
            "an empty allow-list restricts nobody"
        );
        assert_eq!(l.to_string(), "(none)");
    }
    let l = IpList::parse_str("10.0.0.0/8").unwrap();
    assert!(l.allows(ip("10.0.0.1")));
    assert!(!l.allows(ip("11.0.0.1")));
}

#[test]
fn serde_forms() {
    let from_seq: IpList = serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).unwrap();
    let from_str: IpList = serde_json::from_str(r#""10.0.0.0/8, ::1""#).unwrap();
    assert_eq!(from_seq, from_str);
    let any: IpList = serde_json::from_str(r#"["*"]"#).unwrap();
    assert!(any.is_any());
    let empty: IpList = serde_json::from_str("[]").unwrap();
    assert!(empty.is_empty());

    let err = serde_json::from_str::<IpList>(r#"["10.0.0.0/8", "10.0.0.0/33"]"#).unwrap_err();
    assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    let err = serde_json::from_str::<IpList>(r#""1.1.1.1,abc""#).unwrap_err();
    assert!(err.to_string().contains("\"abc\""), "{err}");
    assert!(serde_json::from_str::<IpList>("42").is_err());

    let n: IpNet = serde_json::from_str(r#""2001:db8::/32""#).unwrap();
    assert_eq!(n, net("2001:db8::/32"));
    let err = serde_json::from_str::<IpNet>(r#""300.1.1.1""#).unwrap_err();
    assert!(err.to_string().contains("300.1.1.1"), "{err}");

    // Serialize round-trips, including the empty list and "*".
    for l in [from_seq, any, empty] {
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<IpList>(&json).unwrap(), l, "{json}");
    }

    let cfg: LimitsConfig =
        serde_json::from_str(r#"{"max_connections_per_ip": 4, "exempt": "127.0.0.1,10.0.0.0/8"}"#)
            .unwrap();
    assert_eq!(cfg.max_connections, None);
    assert_eq!(cfg.max_connections_per_ip, Some(4));
    assert!(cfg.exempt.contains(ip("10.1.1.1")));
}

fn limiter(global: Option<usize>, per_ip: Option<usize>, exempt: &str) -> ConnLimiter {
    ConnLimiter::new(LimitsConfig {
        max_connections: global,
        max_connections_per_ip: per_ip,
        exempt: IpList::parse_str(exempt).unwrap(),
    })
}

#[test]
fn per_ip_limit() {
    let l = limiter(None, Some(2), "");
    let a = ip("192.0.2.1");
    let g1 = l.try_acquire(a).unwrap();
    let _g2 = l.try_acquire(a).unwrap();
    assert_eq!(
        l.try_acquire(a).unwrap_err(),
        LimitError::PerIp { ip: a, limit: 2 }
    );
    // Another client is unaffected.
    let _g3 = l.try_acquire(ip("192.0.2.2")).unwrap();
    assert_eq!(l.current(), 3);
    assert_eq!(l.per_ip(a), 2);
    drop(g1);
    assert_eq!(l.per_ip(a), 1);
    let _g4 = l.try_acquire(a).unwrap();
}

#[test]
fn mapped_address_counts_as_same_client() {
    let l = limiter(None, Some(1), "");
    let g = l.try_acquire(ip("192.0.2.1")).unwrap();
    assert_eq!(g.ip(), ip("192.0.2.1"));
    let err = l.try_acquire(ip("::ffff:192.0.2.1")).unwrap_err();
    assert_eq!(
        err,
        LimitError::PerIp {
            ip: ip("192.0.2.1"),
            limit: 1
        }
    );
    assert_eq!(l.per_ip(ip("::ffff:192.0.2.1")), 1);
    assert_eq!(l.distinct_ips(), 1);
}

#[test]
fn exempt_skips_per_ip_but_not_global() {
    let l = limiter(Some(3), Some(1), "10.0.0.0/8");
    let e = ip("10.0.0.5");
    let g: Vec<_> = (0..3).map(|_| l.try_acquire(e).unwrap()).collect();
    assert_eq!(l.per_ip(e), 3);
    assert_eq!(
        l.try_acquire(e).unwrap_err(),
        LimitError::Global { limit: 3 }
    );
    assert_eq!(
        l.try_acquire(ip("192.0.2.1")).unwrap_err(),
        LimitError::Global { limit: 3 }
    );
    drop(g);
    // The exemption is matched on the mapped form too.
    let _a = l.try_acquire(ip("::ffff:10.0.0.5")).unwrap();
    let _b = l.try_acquire(e).unwrap();
}

#[test]
fn global_limit_and_release() {
    let l = limiter(Some(2), None, "");
    let g1 = l.try_acquire(ip("192.0.2.1")).unwrap();
    let g2 = l.try_acquire(ip("192.0.2.2")).unwrap();
    let err = l.try_acquire(ip("192.0.2.3")).unwrap_err();
    assert_eq!(err, LimitError::Global { limit: 2 });
    assert_eq!(err.to_string(), "global connection limit reached (2 open)");
    drop(g1);
    let g3 = l.try_acquire(ip("192.0.2.3")).unwrap();
    drop((g2, g3));
    assert_eq!(l.current(), 0);
    assert_eq!(
        l.distinct_ips(),
        0,
        "entries go when their count reaches zero"
    );
}

#[test]
fn zero_limits_refuse() {
    assert!(limiter(Some(0), None, "").try_acquire(ip("::1")).is_err());
    let l = limiter(None, Some(0), "::1");
    assert!(l.try_acquire(ip("1.2.3.4")).is_err());
    let _ok = l.try_acquire(ip("::1")).unwrap();
    let l = limiter(None, Some(0), "*");
    let _ok = l.try_acquire(ip("1.2.3.4")).unwrap();
}

#[test]
fn unlimited_still_counts() {
    let l = limiter(None, None, "");
    let gs: Vec<_> = (0..100u8)
        .map(|i| l.try_acquire(IpAddr::from([192, 0, 2, i % 10])).unwrap())
        .collect();
    assert_eq!(l.current(), 100);
    assert_eq!(l.distinct_ips(), 10);
    drop(gs);
    assert_eq!((l.current(), l.distinct_ips()), (0, 0));
}

#[test]
fn concurrent_acquire_release_ends_at_zero() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 2_000;
    let l = limiter(Some(THREADS * 2), Some(3), "10.0.0.0/8");
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let l = l.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut refused = 0usize;
                for i in 0..ROUNDS {
                    // Four addresses shared by all threads, one exempt, one mapped.
                    let addr = match (t + i) % 4 {
                        0 => ip("192.0.2.1"),
                        1 => ip("::ffff:192.0.2.1"),
                        2 => ip("10.0.0.1"),
                        _ => ip("2001:db8::1"),
                    };
                    match l.try_acquire(addr) {
                        Ok(g) => {
                            assert!(l.current() <= THREADS * 2);
                            if i % 3 == 0 {
                                std::thread::yield_now();
                            }
                            drop(g);
                        }
                        Err(_) => refused += 1,
                    }
                }
                refused
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(l.current(), 0);
    assert_eq!(l.distinct_ips(), 0);
}
