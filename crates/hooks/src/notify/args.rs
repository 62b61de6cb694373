//! The argument list of a notification, built the way nginx-rtmp builds it.
//!
//! nginx-rtmp (`ngx_rtmp_notify_module.c`, `ngx_rtmp_netcall_http_format_session`) sends:
//! - every call except `connect`: the session part `app, flashver, swfurl, tcurl, pageurl, addr,
//!   clientid`, then the call's own fields;
//! - `connect`: `app, flashver, swfurl, tcurl, pageurl, addr, epoch, call=connect` (no clientid);
//! - `publish`: `call, name, type`; `play`: `call, name, start, duration, reset`;
//! - `publish_done` / `play_done` / `done`: `call`, then `name` when one is known;
//! - `update`: `call=update_publish|update_play, time, timestamp`, then `name`;
//! - `disconnect`: `call=disconnect` (nginx repeats `app` here; we send it once).
//!
//! It then appends the client's own query string raw: the stream name's (`live/demo?token=abc`)
//! for stream calls, the connect app's (`live?token=abc`) for connect/disconnect. Because the
//! client's arguments come last and form decoders differ on duplicates (PHP and Express keep the
//! last value), a client could send `?call=play&name=other` and be judged as someone else. We
//! therefore drop client arguments whose name a built-in argument already uses. We also add
//! `protocol` (`rtmp`, `srt`, `rtsp`, `hls`, ...) since one gateway speaks several, and offer
//! the connect-level query to stream calls too (after the stream's own query, first one wins),
//! so a token given in the server URL (OBS's "Server" field) reaches `on_publish`.

use super::HookEvent;
use std::net::IpAddr;
use std::time::Duration;

/// Which side of a stream a session is on; picks `update_publish` or `update_play`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The session publishes.
    Publish,
    /// The session plays.
    Play,
}

impl Role {
    /// The `call=` value nginx-rtmp sends for this role's periodic update.
    pub fn update_call(self) -> &'static str {
        match self {
            Role::Publish => "update_publish",
            Role::Play => "update_play",
        }
    }
}

/// The per-connection facts every notification carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Ingest or delivery protocol: `rtmp`, `rtmps`, `srt`, `rtsp`, `hls`, `dash`, ...
    pub protocol: String,
    /// Application (first path segment; RTMP connect `app` without its query).
    pub app: String,
    /// Client address; IPv4-mapped IPv6 is sent as plain IPv4, like nginx.
    pub addr: IpAddr,
    /// Server-unique connection number.
    pub clientid: u64,
    /// RTMP connect `flashVer`; empty for other protocols.
    pub flashver: String,
    /// RTMP connect `swfUrl`.
    pub swfurl: String,
    /// RTMP connect `tcUrl`.
    pub tcurl: String,
    /// RTMP connect `pageUrl`.
    pub pageurl: String,
    /// RTMP handshake epoch (server side, ms); sent with `connect` only.
    pub epoch: u32,
    /// The client's connect-level query, e.g. `token=abc` from app `live?token=abc`.
    pub query: String,
}

impl Session {
    /// A session with empty RTMP-only fields.
    pub fn new(protocol: &str, app: &str, addr: IpAddr, clientid: u64) -> Session {
        Session {
            protocol: protocol.to_owned(),
            app: app.to_owned(),
            addr,
            clientid,
            flashver: String::new(),
            swfurl: String::new(),
            tcurl: String::new(),
            pageurl: String::new(),
            epoch: 0,
            query: String::new(),
        }
    }
}

/// Ordered `(name, value)` pairs of one notification: built-ins first, then client arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookArgs {
    builtin: Vec<(String, String)>,
    client: Vec<(String, String)>,
}

impl HookArgs {
    /// `on_connect`.
    pub fn connect(s: &Session) -> HookArgs {
        let mut a = HookArgs::default();
        a.set("app", &s.app);
        a.set("flashver", &s.flashver);
        a.set("swfurl", &s.swfurl);
        a.set("tcurl", &s.tcurl);
        a.set("pageurl", &s.pageurl);
        a.set("addr", &addr(s.addr));
        a.set("epoch", &s.epoch.to_string());
        a.set("call", HookEvent::Connect.call());
        a.set("protocol", &s.protocol);
        a.client_query(&s.query);
        a
    }

    /// `on_disconnect`.
    pub fn disconnect(s: &Session) -> HookArgs {
        let mut a = HookArgs::session(s);
        a.set("call", HookEvent::Disconnect.call());
        a.set("protocol", &s.protocol);
        a.client_query(&s.query);
        a
    }

    /// `on_publish`; `kind` is the publish type the client asked for (`live`, `record`,
    /// `append`; `live` for anything but RTMP).
    pub fn publish(s: &Session, name: &str, kind: &str, query: &str) -> HookArgs {
        let mut a = HookArgs::session(s);
        a.set("call", HookEvent::Publish.call());
        a.set("name", name);
        a.set("type", kind);
        a.set("protocol", &s.protocol);
        a.stream_queries(s, query);
        a
    }

    /// `on_play`. `start`, `duration` and `reset` are 0; an RTMP server that knows the play
    /// command's values overrides them with [`HookArgs::set`].
    pub fn play(s: &Session, name: &str, query: &str) -> HookArgs {
        let mut a = HookArgs::session(s);
        a.set("call", HookEvent::Play.call());
        a.set("name", name);
        a.set("start", "0");
        a.set("duration", "0");
        a.set("reset", "0");
        a.set("protocol", &s.protocol);
        a.stream_queries(s, query);
        a
    }

    /// `on_publish_done`.
    pub fn publish_done(s: &Session, name: &str, query: &str) -> HookArgs {
        HookArgs::done_like(HookEvent::PublishDone, s, name, query)
    }

    /// `on_play_done`.
    pub fn play_done(s: &Session, name: &str, query: &str) -> HookArgs {
        HookArgs::done_like(HookEvent::PlayDone, s, name, query)
    }

    /// `on_record_done`, as nginx-rtmp sends it (`app`, `name`, `path`, `recorder`), plus the
    /// file's times and size.
    pub fn record_done(
        app: &str,
        name: &str,
        path: &str,
        start_ms: i64,
        end_ms: i64,
        bytes: u64,
    ) -> HookArgs {
        let mut a = HookArgs::default();
        a.set("call", HookEvent::RecordDone.call());
        a.set("app", app);
        a.set("name", name);
        // nginx-rtmp names the `record` block here; there is one recorder per stream.
        a.set("recorder", "");
        a.set("path", path);
        a.set("start", &start_ms.to_string());
        a.set("end", &end_ms.to_string());
        a.set("size", &bytes.to_string());
        a
    }

    /// `on_done` (sent after either of the above).
    pub fn done(s: &Session, name: &str, query: &str) -> HookArgs {
        HookArgs::done_like(HookEvent::Done, s, name, query)
    }

    /// `on_update`: `elapsed` since the session started publishing or playing (sent in whole
    /// seconds as `time`), `timestamp_ms` the stream's current timestamp.
    pub fn update(
        s: &Session,
        role: Role,
        name: &str,
        elapsed: Duration,
        timestamp_ms: u32,
        query: &str,
    ) -> HookArgs {
        let mut a = HookArgs::session(s);
        a.set("call", role.update_call());
        a.set("time", &elapsed.as_secs().to_string());
        a.set("timestamp", &timestamp_ms.to_string());
        if !name.is_empty() {
            a.set("name", name);
        }
        a.set("protocol", &s.protocol);
        a.stream_queries(s, query);
        a
    }

    /// Sets a built-in argument, replacing an earlier value in place (order is kept).
    pub fn set(&mut self, name: &str, value: &str) -> &mut HookArgs {
        match self.builtin.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => value.clone_into(v),
            None => self.builtin.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    /// Appends the arguments of a client query string (`token=abc&x=1`, `?` optional).
    /// Names already present, built-in or from an earlier query, are ignored.
    pub fn client_query(&mut self, raw: &str) -> &mut HookArgs {
        let raw = raw.strip_prefix('?').unwrap_or(raw);
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            if name.is_empty() || self.client.iter().any(|(n, _)| *n == name) {
                continue;
            }
            self.client.push((name.into_owned(), value.into_owned()));
        }
        self
    }

    /// The value that will be sent for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The `call=` value.
    pub fn call(&self) -> Option<&str> {
        self.get("call")
    }

    /// What is sent, in order: built-ins, then client arguments not shadowing a built-in.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let builtin = self.builtin.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let client = self
            .client
            .iter()
            .filter(|(n, _)| !self.builtin.iter().any(|(b, _)| b == n))
            .map(|(n, v)| (n.as_str(), v.as_str()));
        builtin.chain(client)
    }

    /// `application/x-www-form-urlencoded` encoding of [`HookArgs::pairs`].
    pub fn to_form(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs())
            .finish()
    }

    fn session(s: &Session) -> HookArgs {
        let mut a = HookArgs::default();
        a.set("app", &s.app);
        a.set("flashver", &s.flashver);
        a.set("swfurl", &s.swfurl);
        a.set("tcurl", &s.tcurl);
        a.set("pageurl", &s.pageurl);
        a.set("addr", &addr(s.addr));
        a.set("clientid", &s.clientid.to_string());
        a
    }

    fn done_like(event: HookEvent, s: &Session, name: &str, query: &str) -> HookArgs {
        let mut a = HookArgs::session(s);
        a.set("call", event.call());
        if !name.is_empty() {
            a.set("name", name);
        }
        a.set("protocol", &s.protocol);
        a.stream_queries(s, query);
        a
    }

    fn stream_queries(&mut self, s: &Session, query: &str) {
        self.client_query(query);
        self.client_query(&s.query);
    }
}

/// nginx prints the peer's address without port; Go and nginx both show a v4-mapped peer as v4.
fn addr(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    pub(crate) fn rtmp_session() -> Session {
        Session {
            flashver: "FMLE/3.0 (compatible; obs)".into(),
            tcurl: "rtmp://127.0.0.1:1935/live?token=app".into(),
            epoch: 123,
            query: "token=app&room=7".into(),
            ..Session::new("rtmp", "live", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 42)
        }
    }

    fn names(a: &HookArgs) -> Vec<&str> {
        a.pairs().map(|(n, _)| n).collect()
    }

    #[test]
    fn publish_mirrors_nginx_order_then_protocol_then_client_args() {
        let a = HookArgs::publish(&rtmp_session(), "demo", "live", "token=abc&quality=hd");
        assert_eq!(
            names(&a),
            [
                "app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call",
                "name", "type", "protocol", "token", "quality", "room"
            ]
        );
        assert_eq!(
            a.get("token"),
            Some("abc"),
            "the stream's own query wins over the app's"
        );
        assert_eq!(a.get("room"), Some("7"));
        assert_eq!(a.get("addr"), Some("10.0.0.5"));
        assert_eq!(a.get("clientid"), Some("42"));
    }

    #[test]
    fn connect_has_epoch_and_no_clientid() {
        let a = HookArgs::connect(&rtmp_session());
        assert_eq!(
            names(&a),
            [
                "app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "epoch", "call",
                "protocol", "token", "room"
            ]
        );
        assert_eq!(a.call(), Some("connect"));
        assert_eq!(a.get("epoch"), Some("123"));
    }

    #[test]
    fn done_calls_omit_an_unknown_name() {
        let s = rtmp_session();
        assert_eq!(
            HookArgs::publish_done(&s, "demo", "").call(),
            Some("publish_done")
        );
        assert_eq!(
            HookArgs::play_done(&s, "demo", "").call(),
            Some("play_done")
        );
        let done = HookArgs::done(&s, "", "");
        assert_eq!(done.call(), Some("done"));
        assert_eq!(done.get("name"), None);
        assert_eq!(HookArgs::disconnect(&s).call(), Some("disconnect"));
    }

    #[test]
    fn update_sends_role_time_and_timestamp() {
        let s = rtmp_session();
        let a = HookArgs::update(
            &s,
            Role::Play,
            "demo",
            Duration::from_millis(61_900),
            5000,
            "",
        );
        assert_eq!(a.call(), Some("update_play"));
        assert_eq!(a.get("time"), Some("61"));
        assert_eq!(a.get("timestamp"), Some("5000"));
        let a = HookArgs::update(&s, Role::Publish, "demo", Duration::ZERO, 0, "");
        assert_eq!(a.call(), Some("update_publish"));
    }

    #[test]
    fn client_args_cannot_override_builtins() {
        let a = HookArgs::publish(
            &rtmp_session(),
            "demo",
            "live",
            "call=play&name=other&addr=1.2.3.4&token=abc&token=second",
        );
        assert_eq!(a.call(), Some("publish"));
        assert_eq!(a.get("name"), Some("demo"));
        assert_eq!(a.get("addr"), Some("10.0.0.5"));
        let sent: Vec<_> = a
            .pairs()
            .filter(|(n, _)| *n == "call" || *n == "token")
            .collect();
        assert_eq!(sent, [("call", "publish"), ("token", "abc")]);
    }

    #[test]
    fn set_replaces_in_place_and_wins_over_client_args() {
        let mut a = HookArgs::play(&rtmp_session(), "demo", "start=99");
        a.set("start", "4294965296");
        assert_eq!(a.get("start"), Some("4294965296"));
        assert_eq!(a.pairs().filter(|(n, _)| *n == "start").count(), 1);
    }

    #[test]
    fn form_encoding_round_trips() {
        let a = HookArgs::publish(&rtmp_session(), "a b&c", "live", "?x=%2F%3D&y=1+2");
        let form = a.to_form();
        let back: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        let expected: Vec<(String, String)> = a
            .pairs()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(back, expected);
        assert_eq!(a.get("name"), Some("a b&c"));
        assert_eq!(a.get("x"), Some("/="));
        assert_eq!(a.get("y"), Some("1 2"));
    }

    #[test]
    fn v4_mapped_peer_is_sent_as_v4() {
        let s = Session::new("srt", "live", "::ffff:192.0.2.1".parse().unwrap(), 1);
        assert_eq!(HookArgs::connect(&s).get("addr"), Some("192.0.2.1"));
        let s = Session::new("srt", "live", "2001:db8::1".parse().unwrap(), 1);
        assert_eq!(HookArgs::connect(&s).get("addr"), Some("2001:db8::1"));
    }
}
