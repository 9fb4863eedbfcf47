//! A real `docker-registry` (distribution 2.8.2) process on loopback, one per
//! [`Registry`], with htpasswd Basic auth standing in for ECR's
//! `AWS:<token>` credentials.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::blob_host::BlobHost;
use crate::tls::{rig_tls, ServerCert};
use crate::wire::{self, free_port, RawResponse};

/// User name ECR hands out with its authorization tokens.
pub const USER: &str = "AWS";

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;
/// The rig's own requests (readiness probes, log barriers) carry this query
/// prefix so they can be left out of `requests()`.
const OWN: &str = "/v2/?rig-";

/// One HTTP request the registry answered, as read back from its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query exactly as received (`http.request.uri`).
    pub uri: String,
    pub status: u16,
}

/// How to start a [`Registry`]; [`Registry::start`] and
/// [`Registry::start_anonymous`] cover the usual cases.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub account: String,
    /// No `auth:` block: every request is served without credentials.
    pub anonymous: bool,
    /// Fixed port; `None` picks a free one (and retries if it gets taken).
    pub port: Option<u16>,
    /// Keep config, data and log here instead of a temporary directory that
    /// is deleted on drop.
    pub dir: Option<PathBuf>,
    /// Answer blob GETs and HEADs with a 307 to an S3-like [`BlobHost`]
    /// that refuses requests carrying `Authorization`, as ECR does. With
    /// `tls`, that host serves HTTPS too (with [`ServerCert::Rig`]).
    pub redirect_blobs: bool,
    /// Serve HTTPS (distribution's `http.tls`) with this certificate of the
    /// rig's ([`ServerCert::Rig`]: the rig CA's for loopback).
    pub tls: Option<ServerCert>,
}

impl RegistryOptions {
    pub fn new(account: &str) -> Self {
        RegistryOptions {
            account: account.to_string(),
            anonymous: false,
            port: None,
            dir: None,
            redirect_blobs: false,
            tls: None,
        }
    }

    /// Served over HTTPS with the rig CA's certificate for loopback.
    pub fn with_tls(self) -> Self {
        RegistryOptions {
            tls: Some(ServerCert::Rig),
            ..self
        }
    }
}

enum Root {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temp(t) => t.path(),
            Root::Kept(p) => p,
        }
    }
}

/// A running `docker-registry serve`. Killed (and its temporary directory
/// removed) on drop; the kernel also kills it when the process that started
/// it ends, so a registry kept in a `static` or a SIGKILLed test run leaves
/// no orphans (only their temporary directories).
///
/// # What the request log holds
///
/// [`Registry::requests`] is built from distribution's JSON log, checked
/// against 2.8.2:
/// * every request that reaches a `/v2/` route handler, whatever its outcome,
///   gets one `"response completed"` (2xx/3xx) or `"response completed with
///   error"` (4xx/5xx, e.g. 404 `MANIFEST_UNKNOWN`, 400 `DIGEST_INVALID`) line
///   carrying method, URI and status;
/// * a request refused by the auth layer gets **no** such line, only
///   `"error authorizing context: ..."`; it is recorded here with status 401;
/// * requests that match no route (404/405 from the router itself) are not
///   logged at all and so are missing;
/// * the line is written after the response, so a client can see its answer
///   before the line exists: `requests()` sends a barrier request and waits
///   for it to appear before reading.
pub struct Registry {
    child: Child,
    root: Root,
    port: u16,
    /// Held while the registry lives when its port was picked for it.
    _lease: Option<wire::PortLease>,
    account: String,
    anonymous: bool,
    syncs: AtomicU64,
    blob_host: Option<BlobHost>,
    tls: Option<ServerCert>,
}

impl Registry {
    /// Starts a registry whose only user is `AWS` with password
    /// `<account_id>-auth-token`. Panics if it cannot be started.
    pub fn start(account_id: &str) -> Registry {
        Self::start_with(RegistryOptions::new(account_id))
    }

    /// The S3-like host blob downloads are redirected to, if any.
    pub fn blob_host(&self) -> Option<&BlobHost> {
        self.blob_host.as_ref()
    }

    /// [`Registry::start`] over HTTPS, with the rig CA's certificate.
    pub fn start_tls(account_id: &str) -> Registry {
        Self::start_with(RegistryOptions::new(account_id).with_tls())
    }

    /// Starts a registry that needs no credentials (account `000000000000`).
    pub fn start_anonymous() -> Registry {
        Self::start_with(RegistryOptions {
            anonymous: true,
            ..RegistryOptions::new("000000000000")
        })
    }

    pub fn start_with(opts: RegistryOptions) -> Registry {
        let root = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
                Root::Kept(d.clone())
            }
            None => Root::Temp(
                tempfile::Builder::new()
                    .prefix("rig-registry-")
                    .tempdir()
                    .expect("creating registry temp dir"),
            ),
        };
        let dir = root.path().to_path_buf();
        let htpasswd = dir.join("htpasswd");
        if !opts.anonymous {
            write_htpasswd(&htpasswd, &password_for(&opts.account));
        }
        let log_path = dir.join("registry.log");
        let blob_host = opts
            .redirect_blobs
            .then(|| BlobHost::start_with(dir.join("data"), opts.tls.map(|_| ServerCert::Rig)));
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let (port, lease) = match opts.port {
                Some(port) => (port, None),
                None => {
                    let lease = free_port();
                    (lease.port(), Some(lease))
                }
            };
            let config = dir.join("config.yml");
            fs::write(
                &config,
                config_yaml(
                    &dir,
                    port,
                    (!opts.anonymous).then_some(&*htpasswd),
                    blob_host.as_ref().map(BlobHost::url).as_deref(),
                    opts.tls,
                ),
            )
            .expect("writing registry config");
            let mut child = spawn(&config, &log_path);
            match wait_ready(&mut child, port, &log_path, opts.anonymous, opts.tls) {
                Ok(()) => {
                    return Registry {
                        child,
                        root,
                        port,
                        _lease: lease,
                        account: opts.account.clone(),
                        anonymous: opts.anonymous,
                        syncs: AtomicU64::new(0),
                        blob_host,
                        tls: opts.tls,
                    }
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Only a lost race for an auto-picked port is worth retrying.
                    let retry = opts.port.is_none() && failure.contains("address already in use");
                    last_failure = failure;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!(
            "docker-registry did not start (dir {}):\n{last_failure}",
            dir.display()
        );
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// What [`crate::http_request`] takes to reach this registry: its host
    /// when plain, its URL when TLS.
    pub fn target(&self) -> String {
        if self.tls.is_some() {
            self.url()
        } else {
            self.host()
        }
    }

    /// The certificate it serves, if TLS.
    pub fn tls(&self) -> Option<ServerCert> {
        self.tls
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn user(&self) -> &'static str {
        USER
    }

    /// What ECR's GetAuthorizationToken would decode to after `AWS:`.
    pub fn password(&self) -> String {
        password_for(&self.account)
    }

    /// "AWS:<password>", as skopeo's `--creds` wants it.
    pub fn creds(&self) -> String {
        format!("{USER}:{}", self.password())
    }

    /// Value for an `Authorization` header.
    pub fn auth_header(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(self.creds())
        )
    }

    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// The directory holding config, htpasswd, log and `data/`.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// Storage root (`rootdirectory`) of the registry.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("registry.log")
    }

    /// Whole registry log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's exit status if it has died (it should not).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("polling docker-registry")
    }

    /// One authenticated request (`Connection: close`), for tests that want
    /// to see the registry's raw answer.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.http_at(&self.target(), method, path, headers, body)
    }

    /// [`Registry::http`] sent to `target` instead (a front before this
    /// registry: [`crate::FaultProxy::target`]), with this registry's
    /// credentials.
    pub fn http_at(
        &self,
        target: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let auth = self.auth_header();
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        wire::request(target, method, path, &all, body)
            .unwrap_or_else(|e| panic!("{method} {target} {path}: {e}"))
    }

    /// Every request answered so far, oldest first. See the type's docs for
    /// what is and isn't there.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let n = self.syncs.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{OWN}sync={n}");
        // A request's line is logged when its handler returns, which can be
        // after the client has its answer (a streamed blob body, a keep-alive
        // connection). So send a marked request and wait for its line: lines
        // of requests answered before it are in by then, their handlers having
        // had a full round trip's head start. Unauthenticated on purpose: a
        // 401 is logged before it is sent (anonymous registries: we poll).
        wire::request(&self.target(), "GET", &marker, &[], b"")
            .unwrap_or_else(|e| panic!("registry {} not answering: {e}", self.host()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            // Quoted, so that sync=1 doesn't match sync=10.
            if log.contains(&format!("\"{marker}\"")) {
                return parse_requests(&log);
            }
            assert!(
                Instant::now() < deadline,
                "barrier {marker} never reached {}",
                self.log_path().display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Count to pass to [`Registry::requests_since`] later.
    pub fn request_mark(&self) -> usize {
        self.requests().len()
    }

    /// Requests answered after `request_mark()` returned `mark`.
    pub fn requests_since(&self, mark: usize) -> Vec<RequestRecord> {
        self.requests().split_off(mark)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn password_for(account: &str) -> String {
    format!("{account}-auth-token")
}

fn write_htpasswd(path: &Path, password: &str) {
    // Cost 4: the registry bcrypt-checks every request; the default cost 10
    // would add milliseconds to each one.
    let out = Command::new("htpasswd")
        .args(["-Bbn", "-C", "4", USER, password])
        .output()
        .unwrap_or_else(|e| panic!("running htpasswd (apt-get install apache2-utils): {e}"));
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(path, out.stdout).expect("writing htpasswd");
}

/// Renders the registry config. Paths are JSON-quoted, which YAML reads as
/// double-quoted strings.
pub(crate) fn config_yaml(
    dir: &Path,
    port: u16,
    htpasswd: Option<&Path>,
    redirect_to: Option<&str>,
    tls: Option<ServerCert>,
) -> String {
    let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("string to JSON");
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        q(&dir.join("data"))
    );
    if let Some(which) = tls {
        let leaf = rig_tls().leaf(which);
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            q(&leaf.cert_path),
            q(&leaf.key_path)
        ));
    }
    if let Some(h) = htpasswd {
        y.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: ecr-bridge-test\n    path: {}\n",
            q(h)
        ));
    }
    if let Some(base) = redirect_to {
        // distribution's redirect middleware: blob GET/HEAD -> 307 to <base>/<storage path>.
        y.push_str(&format!(
            "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {base}\n"
        ));
    }
    y
}

/// Polls until the registry has bound its port and answers `GET /v2/` as
/// configured (401 with auth, 200 without); Err(description with log) if it
/// dies or never answers.
fn wait_ready(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    anonymous: bool,
    tls: Option<ServerCert>,
) -> Result<(), String> {
    let want = if anonymous { 200 } else { 401 };
    let host = format!("127.0.0.1:{port}");
    let target = match tls {
        Some(_) => format!("https://{host}"),
        None => host.clone(),
    };
    // Logged once net.Listen succeeded. Probing before that could get an
    // answer from whichever other server holds the port.
    let bound = format!("listening on {host}");
    let log = || fs::read_to_string(log_path).unwrap_or_default();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("polling docker-registry") {
            return Err(format!("exited with {status}; log:\n{}", log()));
        }
        if log().contains(&bound) {
            match wire::request(&target, "GET", &format!("{OWN}ready"), &[], b"") {
                Ok(r) if r.status == want => return Ok(()),
                Ok(r) => {
                    return Err(format!(
                        "GET /v2/ answered {} (wanted {want}); log:\n{}",
                        r.status,
                        log()
                    ))
                }
                Err(_) => {}
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not ready after {READY_TIMEOUT:?}; log:\n{}",
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(config: &Path, log_path: &Path) -> Child {
    let log = File::create(log_path).expect("creating registry log");
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log);
    spawn_dying_with_process(cmd).unwrap_or_else(|e| {
        panic!("spawning docker-registry (apt-get install docker-registry): {e}")
    })
}

/// Spawns `cmd` so that the kernel kills it when this process dies, even by
/// SIGKILL: a crashed test must not leave registries or moto servers behind.
pub(crate) fn spawn_dying_with_process(mut cmd: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_from_lasting_thread(cmd)
}

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, and
/// test threads come and go while a registry may outlive them. So children
/// are forked by one thread that lives as long as the process.
pub(crate) fn spawn_from_lasting_thread(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("rig-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting rig-spawner thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    spawner.send((cmd, tx)).expect("rig-spawner thread gone");
    rx.recv().expect("rig-spawner thread gone")
}

/// Turns distribution's JSON log into one record per answered request,
/// dropping the rig's own requests.
fn parse_requests(log: &str) -> Vec<RequestRecord> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let msg = v["msg"].as_str().unwrap_or_default();
        let status = match msg {
            "response completed" | "response completed with error" => v["http.response.status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok()),
            // The auth layer answers 401 without a "response completed" line;
            // it logs exactly one of these per refused request.
            m if m.starts_with("error authorizing context") => Some(401),
            _ => None,
        };
        let (Some(status), Some(method), Some(uri)) = (
            status,
            v["http.request.method"].as_str(),
            v["http.request.uri"].as_str(),
        ) else {
            continue;
        };
        if uri.starts_with(OWN) {
            continue;
        }
        out.push(RequestRecord {
            method: method.to_string(),
            uri: uri.to_string(),
            status,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_completed_error_and_auth_lines() {
        let log = r#"{"level":"info","msg":"listening on 127.0.0.1:1"}
{"http.request.method":"GET","http.request.uri":"/v2/","level":"warning","msg":"error authorizing context: basic authentication challenge for realm \"x\": invalid authorization credential"}
{"http.request.method":"GET","http.request.uri":"/v2/?rig-sync=3","level":"warning","msg":"error authorizing context: x"}
{"http.request.method":"HEAD","http.request.uri":"/v2/a/blobs/sha256:00","http.response.status":404,"msg":"response completed with error"}
{"http.request.method":"PUT","http.request.uri":"/v2/a/manifests/t","http.response.status":201,"msg":"response completed"}
not json"#;
        let got: Vec<_> = parse_requests(log)
            .into_iter()
            .map(|r| (r.method, r.uri, r.status))
            .collect();
        assert_eq!(
            got,
            vec![
                ("GET".into(), "/v2/".into(), 401),
                ("HEAD".into(), "/v2/a/blobs/sha256:00".into(), 404),
                ("PUT".into(), "/v2/a/manifests/t".into(), 201),
            ]
        );
    }
}
