//! nginx with Debian's `libnginx-mod-rtmp`: an RTMP server no one here wrote, run in the
//! foreground on a private port with a private prefix dir, killed on drop.

use super::proc::ChildGuard;
use super::server::free_addrs;
use super::{ScratchDir, wait_until};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The module Debian's package installs.
const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
/// Attempts with a fresh port when another process grabbed ours in between.
const BIND_ATTEMPTS: usize = 5;

/// A running nginx-rtmp with `application live { live on; wait_key on; wait_video on; }`.
#[derive(Debug)]
pub struct Nginx {
    child: ChildGuard,
    pub rtmp: SocketAddr,
    _dir: ScratchDir,
}

/// Fails the test with a clear message when nginx or its RTMP module is missing.
fn require_nginx() {
    let ok = Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok && Path::new(MODULE).exists(),
        "nginx with the RTMP module is not installed ({MODULE}): run `scripts/test`, which \
         installs the Debian packages nginx and libnginx-mod-rtmp"
    );
}

impl Nginx {
    /// Starts nginx on a free 127.0.0.1 port and waits until it accepts connections.
    pub fn start() -> Nginx {
        require_nginx();
        let dir = ScratchDir::new();
        let prefix = dir.path().join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).expect("create nginx prefix");
        for attempt in 1..=BIND_ATTEMPTS {
            let (rtmp, _) = free_addrs();
            let conf = prefix.join("nginx.conf");
            std::fs::write(&conf, config(&prefix, rtmp)).expect("write nginx.conf");
            let mut child = ChildGuard::spawn(
                "nginx-rtmp",
                Command::new("nginx")
                    .arg("-p")
                    .arg(&prefix)
                    .arg("-c")
                    .arg(&conf),
                &dir.path().join(format!("nginx-{attempt}.log")),
            );
            let up = wait_until("nginx to listen or exit", Duration::from_secs(10), || {
                if child.try_status().is_some() {
                    return Some(false);
                }
                TcpStream::connect_timeout(&rtmp, Duration::from_millis(200))
                    .ok()
                    .map(|_| true)
            });
            if up {
                return Nginx {
                    child,
                    rtmp,
                    _dir: dir,
                };
            }
            let log = child.log();
            if !log.contains("Address already in use") || attempt == BIND_ATTEMPTS {
                panic!("nginx exited at startup:\n{log}");
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `rtmp://127.0.0.1:PORT/live/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    /// Its error log (info level: connects, publishes, closes).
    pub fn log(&self) -> String {
        self.child.log()
    }
}

/// One foreground process (as `bench/nginx-rtmp.conf`): no master, no daemon, logs to stderr.
fn config(prefix: &Path, rtmp: SocketAddr) -> String {
    let prefix = prefix.display();
    format!(
        "load_module {MODULE};
daemon off;
master_process off;
worker_processes 1;
error_log stderr info;
pid {prefix}/nginx.pid;
events {{
    worker_connections 256;
}}
rtmp {{
    server {{
        listen {rtmp};
        chunk_size 4096;
        application live {{
            live on;
            # New players start on a keyframe, audio after the first video frame.
            wait_key on;
            wait_video on;
        }}
    }}
}}
"
    )
}
