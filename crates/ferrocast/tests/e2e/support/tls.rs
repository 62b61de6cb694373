//! Self-signed certificates made with the `openssl` CLI, and what a TLS server presents.

use super::proc::run;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A PEM certificate and its key.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `<stem>.crt` and `<stem>.key` in `dir`: a P-256 self-signed certificate for
/// `IP:127.0.0.1` and `DNS:localhost` with subject `CN=<cn>`. It is not a CA certificate, so
/// a client that trusts it as an extra root accepts exactly this server certificate.
pub fn self_signed(dir: &Path, stem: &str, cn: &str) -> CertPair {
    let pair = CertPair {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    let out = run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "2", "-subj", &format!("/CN={cn}")])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&pair.key)
            .arg("-out")
            .arg(&pair.cert),
        Duration::from_secs(30),
    );
    assert!(
        out.success(),
        "openssl req failed ({:?}); is the openssl CLI installed (scripts/test installs it)?\n{}",
        out.status,
        out.stderr
    );
    pair
}

/// The subject line of the certificate a TLS server at `addr` presents now
/// (`subject=CN = ...`), from `openssl s_client`.
pub fn presented_subject(addr: SocketAddr) -> String {
    let out = run(
        Command::new("openssl").args(["s_client", "-connect", &addr.to_string()]),
        Duration::from_secs(10),
    );
    out.stdout
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| {
            panic!(
                "openssl s_client {addr}: no certificate subject ({:?}):\n{}\n{}",
                out.status, out.stdout, out.stderr
            )
        })
        .to_owned()
}
