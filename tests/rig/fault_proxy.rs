//! A fault-injecting HTTP/1.1 front for a rig [`Registry`], standing between
//! the code under test and the registry. It does two jobs:
//!
//! * **Faults**, at configurable rates: 5xx answers (before the registry
//!   saw the request, or after it did the work), 429 with `Retry-After`,
//!   connections reset in the middle of a request or response body, response
//!   bodies cut short (the connection closes before `Content-Length` bytes),
//!   slow responses, and a registry that goes down for good after N requests.
//!   Every decision is a hash of (seed, method, path, how many times that
//!   method and path were seen before), not of arrival order, so the same
//!   seed injects the same faults into the same requests however concurrent
//!   requests interleave: a failure can be replayed from its seed.
//! * **ECR behaviours** docker-registry lacks (PATCH answered 201,
//!   `NAME_UNKNOWN`, immutable tags, rotating and expiring tokens, per-API
//!   quotas, referrer refusals, create on push, blob-mount answers): see
//!   `ecr_behaviour.rs`, where they live and are explained.
//!
//! A request goes through: down? → credentials (401/403) → ECR quotas (429)
//! → injected 5xx/429 → ECR's own answers → the registry → injected
//! after-work faults.
//!
//! One request per connection (`Connection: close` both ways), one thread
//! per connection, bodies buffered whole: built for test-sized images, not
//! for speed. Plain HTTP, or HTTPS with [`ProxyOptions::tls`]; it talks TLS
//! to a registry that serves TLS, and tells the registry its own scheme
//! (`X-Forwarded-Proto`) when the two differ, so upload Locations point back
//! at it.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::ecr_behaviour::{
    EcrQuotas, EcrState, MountBehaviour, Repositories, TokenHandle, TokenRotation, TokenState,
};
use crate::gate::Gate;
use crate::registry::Registry;
use crate::tls::{rig_tls, split_target, Conn, ServerCert};

/// Fraction (0.0–1.0) of requests that get each fault. Kinds are exclusive:
/// a request gets at most one. `truncate` applies only to responses with a
/// body (GET); elsewhere its share passes unharmed.
#[derive(Debug, Clone, Default)]
pub struct FaultRates {
    /// 500/502/503; half of them after the registry did the work.
    pub server_error: f64,
    /// 429 `TOO_MANY_REQUESTS` with `Retry-After: retry_after_secs`.
    pub throttle: f64,
    /// Connection reset (RST): mid-body when the request or response has
    /// one, else after the registry answered.
    pub reset: f64,
    /// The response body stops part way and the connection closes.
    pub truncate: f64,
    /// Answer delayed by `slow_delay`, body dribbled out in pieces.
    pub slow: f64,
}

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub seed: u64,
    pub rates: FaultRates,
    pub retry_after_secs: u64,
    pub slow_delay: Duration,
    /// Go down (reset every connection) at the request with this number
    /// (0-based), until [`FaultProxy::set_down`] brings it back.
    pub down_after: Option<u64>,
    /// Answer PATCH with 201 without forwarding it (ECR's answer to an
    /// intermediate chunk, where the spec says 202).
    pub patch_201: bool,
    pub repositories: Repositories,
    /// A tag PUT to an immutable repository where the tag is still free is
    /// committed and then refused anyway, as when a concurrent writer set the
    /// same tag between the client's check and its PUT.
    pub tag_race: bool,
    pub tokens: Option<TokenRotation>,
    /// ECR's per-API request quotas (429 `TOOMANYREQUESTS`, no `Retry-After`).
    pub quotas: EcrQuotas,
    /// Refuse (405 `UNSUPPORTED`) a manifest PUT whose `Content-Type` or any
    /// media type or `artifactType` in its body has parameters (`;...`).
    pub refuse_media_type_parameters: bool,
    /// Refuse (405 `UNSUPPORTED`) a manifest PUT whose body has a `subject`
    /// (an OCI 1.1 referrer).
    pub refuse_referrers: bool,
    /// Repository creation templates with `CREATE_ON_PUSH`: namespace prefixes
    /// (`""` or `"ROOT"`: every name) under which the first push (upload POST
    /// or manifest PUT) to a missing repository creates it, mutable.
    /// Only with [`Repositories::Listed`] or [`Repositories::Moto`].
    pub create_on_push: Vec<String>,
    /// What a cross-repository blob mount (`POST ...?mount=&from=`) gets.
    pub mount: MountBehaviour,
    /// ECR's tags of up to 300 characters: a longer-than-128 tag (which
    /// docker-registry refuses) is aliased upstream, tag lists map it back,
    /// over 300 gets 400 `TAG_INVALID` (see `long_tags.rs`).
    pub long_tags: bool,
    /// Serve HTTPS with this certificate ([`ServerCert::Rig`]: the one the
    /// rig CA made for loopback) instead of plain HTTP.
    pub tls: Option<ServerCert>,
    /// Hold every blob GET until this gate opens.
    pub hold_blob_gets: Option<Gate>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            seed: 1,
            rates: FaultRates::default(),
            retry_after_secs: 0,
            slow_delay: Duration::from_millis(100),
            down_after: None,
            patch_201: false,
            repositories: Repositories::Any,
            tag_race: false,
            tokens: None,
            quotas: EcrQuotas::default(),
            refuse_media_type_parameters: false,
            refuse_referrers: false,
            create_on_push: Vec::new(),
            mount: MountBehaviour::Forward,
            long_tags: false,
            tls: None,
            hold_blob_gets: None,
        }
    }
}

impl ProxyOptions {
    /// A front with ECR's behaviours and no faults: PATCH answered 201,
    /// only listed repositories exist, tags up to 300 characters.
    pub fn ecr() -> Self {
        ProxyOptions {
            patch_201: true,
            repositories: Repositories::Listed,
            long_tags: true,
            ..Self::default()
        }
    }
}

/// What the proxy did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub requests: u64,
    /// Requests the registry received.
    pub forwarded: u64,
    pub server_errors: u64,
    /// Of `server_errors`: answered after the registry did the work.
    pub server_errors_after_work: u64,
    pub throttled: u64,
    pub resets_mid_body: u64,
    pub resets_without_body: u64,
    pub truncated: u64,
    pub slow: u64,
    /// Connections reset because the registry was "down".
    pub down_resets: u64,
    pub patches: u64,
    pub name_unknown: u64,
    pub tag_refusals: u64,
    pub unauthorized: u64,
    /// Of `unauthorized`: credentials that were valid before a rotation.
    pub stale_tokens: u64,
    pub rotations: u64,
    /// Blob-upload PUTs the registry received (completed or not).
    pub blob_puts_forwarded: u64,
    /// Manifest PUTs the registry received (PutImage calls that did work).
    pub manifest_puts_forwarded: u64,
    /// Requests refused with 429 by [`ProxyOptions::quotas`], all APIs.
    pub quota_throttled: u64,
    /// Of `quota_throttled`: manifest PUTs (PutImage).
    pub put_image_throttled: u64,
    /// Requests refused with 403 for an expired token
    /// ([`TokenRotation::Expiring`]).
    pub expired_tokens: u64,
    /// Tokens issued with [`TokenHandle::issue`].
    pub tokens_issued: u64,
    /// Manifest PUTs refused with 405 (media type parameters, referrers).
    pub referrers_refused: u64,
    /// Repositories created by a push ([`ProxyOptions::create_on_push`]).
    pub created_on_push: u64,
    /// Blob mounts not done: turned into plain uploads or refused.
    pub mounts_refused: u64,
    /// Manifest requests whose 129–300 character tag went upstream as an alias.
    pub long_tags_aliased: u64,
    /// Manifest requests refused for a tag over 300 characters.
    pub long_tags_refused: u64,
}

impl ProxyStats {
    /// Faults injected, all kinds.
    pub fn faults(&self) -> u64 {
        self.server_errors
            + self.throttled
            + self.resets_mid_body
            + self.resets_without_body
            + self.truncated
            + self.slow
    }
}

impl std::fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests={} forwarded={} 5xx={} (after work {}) 429={} resets mid-body={} resets other={} truncated={} slow={} down-resets={}",
            self.requests,
            self.forwarded,
            self.server_errors,
            self.server_errors_after_work,
            self.throttled,
            self.resets_mid_body,
            self.resets_without_body,
            self.truncated,
            self.slow,
            self.down_resets
        )?;
        let ecr = [
            ("quota-429", self.quota_throttled),
            ("expired-403", self.expired_tokens),
            ("referrer-405", self.referrers_refused),
            ("created-on-push", self.created_on_push),
            ("mounts-refused", self.mounts_refused),
            ("long-tags-aliased", self.long_tags_aliased),
            ("long-tags-refused", self.long_tags_refused),
        ];
        for (name, n) in ecr.iter().filter(|(_, n)| *n > 0) {
            write!(f, " {name}={n}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) server_errors_after_work: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) resets_mid_body: AtomicU64,
    pub(crate) resets_without_body: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) down_resets: AtomicU64,
    pub(crate) patches: AtomicU64,
    pub(crate) name_unknown: AtomicU64,
    pub(crate) tag_refusals: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) stale_tokens: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) blob_puts_forwarded: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Shared {
    pub(crate) opts: ProxyOptions,
    /// "127.0.0.1:PORT" (plain) or "https://127.0.0.1:PORT".
    pub(crate) upstream: String,
    /// The registry's real `Authorization` value (None: anonymous).
    pub(crate) upstream_auth: Option<String>,
    pub(crate) counters: Counters,
    occurrences: Mutex<HashMap<String, u64>>,
    /// (fault, method, path#occurrence) of every fault injected, for failure messages.
    fault_log: Mutex<Vec<String>>,
    down: AtomicBool,
    pub(crate) listed: Mutex<BTreeMap<String, bool>>,
    pub(crate) tokens: Mutex<TokenState>,
    pub(crate) rotated_at_upload: AtomicBool,
    /// Quota buckets and the ECR behaviours' counters.
    pub(crate) ecr: EcrState,
    stop: AtomicBool,
}

/// A running proxy in front of one registry. Stops accepting on drop.
pub struct FaultProxy {
    port: u16,
    pub(crate) shared: Arc<Shared>,
}

/// What every token the proxy hands out starts with.
pub(crate) const TOKEN_PREFIX: &str = "rotating-token-";

pub(crate) fn token(generation: u64) -> String {
    format!("{TOKEN_PREFIX}{generation}")
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl FaultProxy {
    /// Starts a proxy for `registry` on a free loopback port (talking TLS
    /// to it if it serves TLS).
    pub fn start(registry: &Registry, opts: ProxyOptions) -> FaultProxy {
        let upstream_auth = (!registry.is_anonymous()).then(|| registry.auth_header());
        Self::start_for(registry.target(), upstream_auth, opts)
    }

    /// Starts a proxy for any HTTP/1.1 server at `upstream`:
    /// "127.0.0.1:PORT" (plain) or "https://127.0.0.1:PORT" (a certificate
    /// the rig made).
    pub fn start_for(
        upstream: String,
        upstream_auth: Option<String>,
        opts: ProxyOptions,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let tls = opts.tls.map(|which| rig_tls().server_config(which));
        let shared = Arc::new(Shared {
            upstream,
            upstream_auth,
            counters: Counters::default(),
            occurrences: Mutex::new(HashMap::new()),
            fault_log: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            listed: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(TokenState::new(opts.tokens)),
            rotated_at_upload: AtomicBool::new(false),
            ecr: EcrState::new(&opts.quotas),
            opts,
            stop: AtomicBool::new(false),
        });
        let accept = shared.clone();
        std::thread::Builder::new()
            .name("rig-fault-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = accept.clone();
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                        if let Ok(conn) = Conn::accept(stream, tls.as_ref()) {
                            let _ = shared.serve(conn);
                        }
                    });
                }
            })
            .expect("starting fault proxy");
        FaultProxy { port, shared }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, or `https://...` with [`ProxyOptions::tls`].
    pub fn url(&self) -> String {
        let scheme = if self.shared.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    /// What [`crate::http_request`] takes to reach this proxy: its host
    /// when plain, its URL when TLS.
    pub fn target(&self) -> String {
        if self.shared.opts.tls.is_some() {
            self.url()
        } else {
            self.host()
        }
    }

    pub fn seed(&self) -> u64 {
        self.shared.opts.seed
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut stats = ProxyStats {
            requests: g(&c.requests),
            forwarded: g(&c.forwarded),
            server_errors: g(&c.server_errors),
            server_errors_after_work: g(&c.server_errors_after_work),
            throttled: g(&c.throttled),
            resets_mid_body: g(&c.resets_mid_body),
            resets_without_body: g(&c.resets_without_body),
            truncated: g(&c.truncated),
            slow: g(&c.slow),
            down_resets: g(&c.down_resets),
            patches: g(&c.patches),
            name_unknown: g(&c.name_unknown),
            tag_refusals: g(&c.tag_refusals),
            unauthorized: g(&c.unauthorized),
            stale_tokens: g(&c.stale_tokens),
            rotations: g(&c.rotations),
            blob_puts_forwarded: g(&c.blob_puts_forwarded),
            ..ProxyStats::default()
        };
        self.shared.ecr.fill(&mut stats);
        stats
    }

    /// The last `n` faults injected, as "kind METHOD path#occurrence".
    pub fn recent_faults(&self, n: usize) -> Vec<String> {
        let log = self.shared.fault_log.lock().expect("fault log");
        log[log.len().saturating_sub(n)..].to_vec()
    }

    /// Takes the registry down (every connection reset) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// With [`Repositories::Listed`]: the repository exists from now on.
    pub fn create_repository(&self, name: &str, immutable_tags: bool) {
        self.shared
            .listed
            .lock()
            .expect("repositories")
            .insert(name.to_string(), immutable_tags);
    }

    pub fn delete_repository(&self, name: &str) {
        self.shared
            .listed
            .lock()
            .expect("repositories")
            .remove(name);
    }

    /// The current token, for a credential source (with `tokens` set).
    pub fn tokens(&self) -> TokenHandle {
        TokenHandle(self.shared.clone())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.host());
    }
}

/// A request head as received.
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub(crate) fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub(crate) fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn is_blob_upload_put(&self) -> bool {
        self.method == "PUT" && self.path().contains("/blobs/uploads/")
    }
}

/// What the fault dice said for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    ServerError { status: u16, after_work: bool },
    Throttle,
    Reset { cut: f64 },
    Truncate { cut: f64 },
    Slow,
}

impl Shared {
    fn serve(&self, stream: Conn) -> io::Result<()> {
        let n = self.counters.requests.fetch_add(1, Ordering::SeqCst);
        if self.opts.down_after == Some(n) {
            self.down.store(true, Ordering::SeqCst);
        }
        if self.down.load(Ordering::SeqCst) {
            bump(&self.counters.down_resets);
            return stream.reset();
        }
        let mut reader = BufReader::new(stream);
        let Some(mut head) = read_head(&mut reader)? else {
            return Ok(());
        };
        if let Some(gate) = &self.opts.hold_blob_gets {
            if head.method == "GET" && head.path().contains("/blobs/") {
                gate.pass();
            }
        }
        let fault = self.decide(&head);

        // A reset while the client is still sending its body.
        if let Fault::Reset { cut } = fault {
            let len = head.content_length();
            if len > 0 && !head.chunked() {
                let mut part = vec![0u8; ((len as f64 * cut) as usize).min(len - 1)];
                reader.read_exact(&mut part)?;
                self.note(
                    "reset-mid-request-body",
                    &head,
                    &self.counters.resets_mid_body,
                );
                return reader.into_inner().reset();
            }
        }
        let body = read_body(&mut reader, &head)?;
        // One request per connection: nothing after the body is wanted.
        let mut out = reader.into_inner();

        let auth = match self.authorize(&head) {
            Ok(auth) => auth,
            Err(refusal) => return refusal.send(&mut out, &head),
        };
        if let Some(refusal) = self.over_quota(&head) {
            return refusal.send(&mut out, &head);
        }

        match fault {
            Fault::ServerError {
                status,
                after_work: false,
            } => {
                self.note("5xx", &head, &self.counters.server_errors);
                return respond(&mut out, &head, status_line(status), &[], b"injected fault");
            }
            Fault::Throttle => {
                self.note("429", &head, &self.counters.throttled);
                return respond(
                    &mut out,
                    &head,
                    "429 Too Many Requests",
                    &[("Retry-After", self.opts.retry_after_secs.to_string())],
                    &error_json("TOOMANYREQUESTS", "Rate exceeded"),
                );
            }
            _ => {}
        }

        if let Some(answer) = self.ecr_answer(&mut head, &body, auth.as_deref())? {
            return answer.send(&mut out, &head);
        }

        let resp = match self.forward(&head, &body, auth.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("proxy: upstream failed: {e}");
                return respond(&mut out, &head, "502 Bad Gateway", &[], msg.as_bytes());
            }
        };
        let resp = self.unalias_tag_list(&head, resp);

        match fault {
            Fault::ServerError {
                status,
                after_work: true,
            } => {
                self.note("5xx-after-work", &head, &self.counters.server_errors);
                bump(&self.counters.server_errors_after_work);
                respond(&mut out, &head, status_line(status), &[], b"injected fault")
            }
            Fault::Reset { cut } => {
                if resp.body.is_empty() {
                    self.note("reset", &head, &self.counters.resets_without_body);
                    return out.reset();
                }
                self.note(
                    "reset-mid-response-body",
                    &head,
                    &self.counters.resets_mid_body,
                );
                out.write_all(&resp.head)?;
                out.write_all(&resp.body[..cut_at(resp.body.len(), cut)])?;
                out.flush()?;
                // Let the client read what was sent, so the reset lands mid-body.
                std::thread::sleep(Duration::from_millis(10));
                out.reset()
            }
            Fault::Truncate { cut } if !resp.body.is_empty() => {
                self.note("truncated", &head, &self.counters.truncated);
                out.write_all(&resp.head)?;
                out.write_all(&resp.body[..cut_at(resp.body.len(), cut)])?;
                out.flush()?;
                out.shutdown_write()
            }
            Fault::Slow => {
                self.note("slow", &head, &self.counters.slow);
                let step = self.opts.slow_delay / 4;
                std::thread::sleep(step * 2);
                out.write_all(&resp.head)?;
                for piece in resp.body.chunks(resp.body.len().div_ceil(2).max(1)) {
                    std::thread::sleep(step);
                    out.write_all(piece)?;
                    out.flush()?;
                }
                Ok(())
            }
            _ => {
                out.write_all(&resp.head)?;
                out.write_all(&resp.body)?;
                out.flush()
            }
        }
    }

    /// Rolls the dice for a request, deterministically from the seed.
    fn decide(&self, head: &Head) -> Fault {
        let r = &self.opts.rates;
        if r.server_error + r.throttle + r.reset + r.truncate + r.slow <= 0.0 {
            return Fault::None;
        }
        let key = format!("{} {}", head.method, fault_key(&head.target));
        let occurrence = {
            let mut seen = self.occurrences.lock().expect("occurrences");
            let n = seen.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let roll = |salt: u64| unit(mix(self.opts.seed, &key, occurrence, salt));
        let u = roll(1);
        let mut edge = 0.0;
        let mut band = |rate: f64| {
            let hit = u >= edge && u < edge + rate;
            edge += rate;
            hit
        };
        if band(r.server_error) {
            let statuses = [500, 502, 503];
            let pick = (mix(self.opts.seed, &key, occurrence, 2) % 3) as usize;
            Fault::ServerError {
                status: statuses[pick],
                after_work: roll(3) < 0.5,
            }
        } else if band(r.throttle) {
            Fault::Throttle
        } else if band(r.reset) {
            Fault::Reset { cut: roll(4) }
        } else if band(r.truncate) {
            if head.method == "GET" {
                Fault::Truncate { cut: roll(5) }
            } else {
                Fault::None
            }
        } else if band(r.slow) {
            Fault::Slow
        } else {
            Fault::None
        }
    }

    fn note(&self, kind: &str, head: &Head, counter: &AtomicU64) {
        bump(counter);
        let key = format!("{} {}", head.method, fault_key(&head.target));
        let occurrence = self
            .occurrences
            .lock()
            .expect("occurrences")
            .get(&key)
            .copied()
            .unwrap_or(0);
        self.fault_log
            .lock()
            .expect("fault log")
            .push(format!("{kind} {key}#{occurrence}"));
    }

    /// Sends the request to the registry and reads its whole answer.
    pub(crate) fn forward(
        &self,
        head: &Head,
        body: &[u8],
        auth: Option<&str>,
    ) -> io::Result<Upstream> {
        // Location URLs the registry builds must carry our scheme, not its own.
        let ours = if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let forwarded_proto = (split_target(&self.upstream).0 != self.opts.tls.is_some())
            .then_some(("X-Forwarded-Proto", ours));
        let sent = send_request(
            &self.upstream,
            head,
            body,
            &["authorization"],
            auth,
            forwarded_proto.as_slice(),
        )?;
        bump(&self.counters.forwarded);
        if head.is_blob_upload_put() {
            bump(&self.counters.blob_puts_forwarded);
        }
        if head.method == "PUT" && head.path().contains("/manifests/") {
            bump(&self.ecr.counters.manifest_puts_forwarded);
        }
        read_answer(sent)
    }
}

/// [`send_request`], then [`read_answer`].
pub(crate) fn exchange(
    upstream: &str,
    head: &Head,
    body: &[u8],
    drop: &[&str],
    auth: Option<&str>,
) -> io::Result<Upstream> {
    read_answer(send_request(upstream, head, body, drop, auth, &[])?)
}

/// Sends a request on to `upstream` ("127.0.0.1:PORT", or
/// "https://127.0.0.1:PORT" for TLS) with its headers as received, less
/// hop-by-hop ones and those named in `drop` (lower case), plus
/// `Authorization: auth` if given and `extra`. The body goes with
/// `Content-Length` (a chunked request arrives de-chunked). `Host` stays the
/// client's, so Location URLs upstream builds point back at us.
pub(crate) fn send_request(
    upstream: &str,
    head: &Head,
    body: &[u8],
    drop: &[&str],
    auth: Option<&str>,
    extra: &[(&str, &str)],
) -> io::Result<Conn> {
    let mut up = Conn::connect(upstream)?;
    up.tcp().set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut text = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "keep-alive" | "content-length" | "transfer-encoding"
        ) || drop.contains(&lower.as_str())
        {
            continue;
        }
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(a) = auth {
        text.push_str(&format!("Authorization: {a}\r\n"));
    }
    for (k, v) in extra {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(head.method.as_str(), "PUT" | "POST" | "PATCH") {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    up.write_all(text.as_bytes())?;
    up.write_all(body)?;
    up.flush()?;
    Ok(up)
}

/// Reads upstream's whole answer to a request sent with `Connection: close`.
pub(crate) fn read_answer(up: Conn) -> io::Result<Upstream> {
    let mut reader = BufReader::new(up);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    if status_line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "registry closed without answering",
        ));
    }
    let mut out_head = status_line.trim_end().to_string() + "\r\n";
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "connection" && name != "keep-alive" {
            out_head.push_str(line);
            out_head.push_str("\r\n");
        }
    }
    out_head.push_str("Connection: close\r\n\r\n");
    // Upstream closes after its answer (we asked it to), so the rest of the
    // stream is the body, whatever its framing.
    let mut body = Vec::new();
    reader.read_to_end(&mut body)?;
    Ok(Upstream {
        head: out_head.into_bytes(),
        body,
    })
}

pub(crate) struct Upstream {
    pub(crate) head: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

fn cut_at(len: usize, cut: f64) -> usize {
    ((len as f64 * cut) as usize).min(len.saturating_sub(1))
}

fn status_line(status: u16) -> &'static str {
    match status {
        500 => "500 Internal Server Error",
        502 => "502 Bad Gateway",
        _ => "503 Service Unavailable",
    }
}

pub(crate) fn error_json(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}

/// Writes a whole answer; a HEAD gets the headers only.
pub(crate) fn respond(
    out: &mut impl Write,
    head: &Head,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() && body[0] == b'{' {
        text.push_str("Content-Type: application/json\r\n");
    }
    text.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    out.write_all(text.as_bytes())?;
    if head.method != "HEAD" {
        out.write_all(body)?;
    }
    out.flush()
}

pub(crate) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

pub(crate) fn read_body(reader: &mut impl BufRead, head: &Head) -> io::Result<Vec<u8>> {
    if !head.chunked() {
        let mut body = vec![0u8; head.content_length()];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if n == 0 {
            // Trailers, then the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + n, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// `/v2/<repo>/<rest>` -> (repo, rest) for repository-scoped routes.
pub(crate) fn split_repo(path: &str) -> Option<(&str, &str)> {
    let p = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| p.find(m).map(|i| (&p[..i], &p[i + 1..])))
        .min_by_key(|(repo, _)| repo.len())
}

/// The request's identity for the fault dice: method-independent path, with
/// an upload session's random id replaced by the digest it uploads (so a
/// replay hits the same blob whatever session ids the registry hands out).
fn fault_key(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path.find("/blobs/uploads/") {
        Some(i) => {
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap_or("");
            let has_session = path.len() > i + "/blobs/uploads/".len();
            format!(
                "{}/blobs/uploads/{}{digest}",
                &path[..i],
                if has_session { "<session>" } else { "" }
            )
        }
        None => path.to_string(),
    }
}

fn mix(seed: u64, key: &str, occurrence: u64, salt: u64) -> u64 {
    // FNV-1a over the key, then splitmix64 over everything.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h
        ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ occurrence.rotate_left(32)
        ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_keys_ignore_upload_session_ids() {
        assert_eq!(
            fault_key("/v2/a/b/blobs/uploads/1234-uuid?_state=xyz&digest=sha256:ab"),
            "/v2/a/b/blobs/uploads/<session>sha256:ab"
        );
        assert_eq!(fault_key("/v2/a/blobs/uploads/"), "/v2/a/blobs/uploads/");
        assert_eq!(fault_key("/v2/a/manifests/v1"), "/v2/a/manifests/v1");
    }

    #[test]
    fn repository_routes_split_at_the_first_route_marker() {
        assert_eq!(
            split_repo("/v2/team/app/manifests/v1"),
            Some(("team/app", "manifests/v1"))
        );
        assert_eq!(
            split_repo("/v2/app/blobs/uploads/x"),
            Some(("app", "blobs/uploads/x"))
        );
        assert_eq!(split_repo("/v2/"), None);
    }

    #[test]
    fn the_dice_depend_on_seed_key_and_occurrence_only() {
        let a = mix(7, "GET /v2/a/blobs/x", 1, 1);
        assert_eq!(a, mix(7, "GET /v2/a/blobs/x", 1, 1));
        assert_ne!(a, mix(8, "GET /v2/a/blobs/x", 1, 1));
        assert_ne!(a, mix(7, "GET /v2/a/blobs/x", 2, 1));
        // Roughly uniform: 10% of 10,000 rolls land below 0.1.
        let low = (0..10_000)
            .filter(|n| unit(mix(1, "k", *n, 1)) < 0.1)
            .count();
        assert!((850..1150).contains(&low), "{low}");
    }
}
