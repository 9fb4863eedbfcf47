//! A real moto server (AWS API stand-in) on a free loopback port, one per
//! test: ECR control plane, STS AssumeRole with per-account state, SSM,
//! DynamoDB and its streams. Starts in well under a second.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// The account moto gives plain static credentials.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

pub struct Moto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// Where `moto_server` is: `$MOTO_SERVER`, else the venv `scripts/setup.sh`
/// makes (`$ECR_BRIDGE_TOOLS/venv`, default `~/.cache/ecr-bridge/venv`), else PATH.
pub fn moto_server_path() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let tools = std::env::var("ECR_BRIDGE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/ecr-bridge")
        });
    let venv = tools.join("venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::Builder::new()
            .prefix("rig-moto-")
            .tempdir()
            .expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let log = File::create(dir.path().join("moto.log")).expect("moto log");
            let mut cmd = Command::new(moto_server_path());
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log);
            let mut child = crate::registry::spawn_dying_with_process(cmd).unwrap_or_else(|e| {
                panic!(
                    "starting {} (run scripts/setup.sh): {e}",
                    moto_server_path().display()
                )
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(r) =
                    http::request(&format!("127.0.0.1:{port}"), "GET", "/moto-api/", &[], b"")
                {
                    if r.status == 200 {
                        return Moto { child, port, dir };
                    }
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken, most likely: try another
                }
                assert!(
                    Instant::now() < deadline,
                    "moto did not start: {}",
                    dir.path().join("moto.log").display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "moto_server failed to start 5 times; log: {}",
            std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}
