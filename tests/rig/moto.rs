//! A real moto server (AWS API stand-in) on a free loopback port, one per
//! test: ECR control plane, STS AssumeRole with per-account state, SSM,
//! DynamoDB and its streams. Starts in well under a second.
//!
//! And the rig's own calls to moto, in one place: ECR's
//! `DescribeRepositories` and `CreateRepository` in a chosen account and
//! region (the fault front's [`Repositories::Moto`](crate::Repositories)),
//! and STS `GetCallerIdentity` (the AWS front's account of an access key).
//! moto checks no signature, so a SigV4 `Authorization` header with a fake
//! signature only tells it the region and the access key.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::wire::{self, free_port};

/// The account moto gives plain static credentials.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

pub struct Moto {
    child: Child,
    port: u16,
    _lease: wire::PortLease,
    dir: tempfile::TempDir,
}

/// How moto is started: `$MOTO_SERVER`; else `scripts/lib/moto_server.py`
/// (moto_server with DynamoDB's Query by hash key; see that file) under the
/// venv `scripts/setup.sh` makes (`$ECR_BRIDGE_TOOLS/venv`, default
/// `~/.cache/ecr-bridge/venv`); else `moto_server` from PATH.
pub fn moto_command() -> Command {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return Command::new(p);
    }
    let tools = std::env::var("ECR_BRIDGE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/ecr-bridge")
        });
    let python = tools.join("venv/bin/python");
    if python.exists() {
        let mut cmd = Command::new(python);
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/lib/moto_server.py"
        ));
        cmd
    } else {
        Command::new("moto_server")
    }
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::Builder::new()
            .prefix("rig-moto-")
            .tempdir()
            .expect("tempdir");
        for _ in 0..5 {
            let lease = free_port();
            let port = lease.port();
            let log = File::create(dir.path().join("moto.log")).expect("moto log");
            let mut cmd = moto_command();
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log);
            let mut child = crate::registry::spawn_dying_with_process(cmd).unwrap_or_else(|e| {
                panic!("starting {:?} (run scripts/setup.sh): {e}", moto_command())
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(r) =
                    wire::request(&format!("127.0.0.1:{port}"), "GET", "/moto-api/", &[], b"")
                {
                    if r.status == 200 {
                        return Moto {
                            child,
                            port,
                            _lease: lease,
                            dir,
                        };
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

/// One ECR JSON call to moto, acting in `account` (moto's
/// `x-moto-account-id` header) and `region` (the SigV4 credential scope):
/// (status, answer as JSON, answer as text).
fn moto_ecr(
    moto_url: &str,
    account: &str,
    region: &str,
    action: &str,
    body: &Value,
) -> (u16, Value, String) {
    let host = moto_url.trim_start_matches("http://");
    let credential = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTESTONLY/20240101/{region}/ecr/aws4_request, SignedHeaders=host, Signature=0"
    );
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{action}");
    let r = wire::request(
        host,
        "POST",
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Authorization", &credential),
            ("x-moto-account-id", account),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("asking moto at {moto_url}: {e}"));
    let answer: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    (
        r.status,
        answer,
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// Asks moto's ECR (`DescribeRepositories`, acting in `account` through
/// moto's `x-moto-account-id` header) whether a repository exists:
/// `Some(immutable)` when it does.
pub fn moto_repository(moto_url: &str, account: &str, region: &str, name: &str) -> Option<bool> {
    let body = serde_json::json!({ "repositoryNames": [name] });
    let (status, answer, text) = moto_ecr(moto_url, account, region, "DescribeRepositories", &body);
    match status {
        200 => answer["repositories"][0]["imageTagMutability"]
            .as_str()
            .map(|m| m.starts_with("IMMUTABLE")),
        400 if answer["__type"] == "RepositoryNotFoundException" => None,
        s => panic!("moto DescribeRepositories answered {s}: {text}"),
    }
}

/// Creates a mutable repository in moto's ECR: true if this call created
/// it, false if it already existed.
pub fn moto_create_repository(moto_url: &str, account: &str, region: &str, name: &str) -> bool {
    let body = serde_json::json!({ "repositoryName": name, "imageTagMutability": "MUTABLE" });
    let (status, answer, text) = moto_ecr(moto_url, account, region, "CreateRepository", &body);
    match status {
        200 => true,
        400 if answer["__type"] == "RepositoryAlreadyExistsException" => false,
        s => panic!("moto CreateRepository answered {s}: {text}"),
    }
}

/// The account moto's STS (`GetCallerIdentity`) says `access_key` belongs
/// to; `moto_host` is "127.0.0.1:PORT".
pub(crate) fn moto_account_of(moto_host: &str, access_key: &str) -> Option<String> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0"
    );
    let r = wire::request(
        moto_host,
        "POST",
        "/",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Authorization", &auth),
        ],
        b"Action=GetCallerIdentity&Version=2011-06-15",
    )
    .ok()?;
    if r.status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&r.body);
    let start = text.find("<Account>")? + "<Account>".len();
    let end = start + text[start..].find("</Account>")?;
    Some(text[start..end].trim().to_string())
}
