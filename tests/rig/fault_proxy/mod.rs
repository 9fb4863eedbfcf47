//! A fault-injecting HTTP/1.1 front for a rig [`Registry`], standing between
//! the code under test and the registry. It does two jobs:
//!
//! * **Faults**, at configurable rates: 5xx answers (before the registry
//!   saw the request, or after it did the work), 429 with `Retry-After`,
//!   connections reset in the middle of a request or response body, response
//!   bodies cut short (the connection closes before `Content-Length` bytes),
//!   slow responses, and a registry that goes down for good after N requests.
//!   Which request gets which fault is the dice's (`dice.rs`): a hash of
//!   (seed, method, path, how many times that method and path were seen
//!   before), not of arrival order, so the same seed injects the same faults
//!   into the same requests however concurrent requests interleave: a
//!   failure can be replayed from its seed. How a fault is dealt out around
//!   the registry's answer is `forward.rs`'s.
//! * **ECR behaviours** docker-registry lacks (PATCH answered 201,
//!   `NAME_UNKNOWN`, immutable tags, rotating and expiring tokens, per-API
//!   quotas, referrer refusals, create on push, blob-mount answers, long
//!   tags): see `ecr/`, one module a behaviour, where they are explained.
//!
//! A request goes through: down? → credentials (401/403) → ECR quotas (429)
//! → injected 5xx/429 → ECR's own answers → the registry → injected
//! after-work faults.
//!
//! One request per connection (`Connection: close` both ways), one thread
//! per connection, bodies buffered whole ([`crate::wire`]). Plain HTTP, or
//! HTTPS with [`ProxyOptions::tls`]; it talks TLS to a registry that serves
//! TLS, and tells the registry its own scheme (`X-Forwarded-Proto`) when the
//! two differ, so upload Locations point back at it.

mod dice;
pub(crate) mod ecr;
mod forward;
mod stats;

use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use dice::FaultRates;
pub use ecr::{
    long_tag_alias, EcrApi, EcrQuotas, MountBehaviour, Repositories, TokenHandle, TokenRotation,
};
pub use stats::ProxyStats;

use crate::gate::Gate;
use crate::registry::Registry;
use crate::tls::{Conn, ServerCert};
use crate::wire::{read_body, read_head, Head, Listener};
use dice::{Dice, Fault};
use ecr::{EcrState, TokenState};
use stats::Counters;

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
    /// over 300 gets 400 `TAG_INVALID` (see `ecr/long_tags.rs`).
    pub long_tags: bool,
    /// Serve HTTPS with this certificate ([`ServerCert::Rig`]: the one the
    /// rig CA made for loopback) instead of plain HTTP.
    pub tls: Option<ServerCert>,
    /// Hold every blob GET until this gate opens.
    pub hold_blob_gets: Option<Gate>,
    /// Refuse this many manifest PUTs with ECR's 400 `BLOB_UPLOAD_UNKNOWN`
    /// ("Layers with digests ... do not exist"), as when PutImage does not
    /// see yet the layers just uploaded (see `ecr/layer_lag.rs`).
    pub layer_lag: u32,
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
            layer_lag: 0,
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

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A registry error body: `{"errors": [{"code": ..., "message": ...}]}`.
pub(crate) fn error_json(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}

/// `/v2/<repo>/<rest>` -> (repo, rest) for repository-scoped routes.
pub(crate) fn split_repo(path: &str) -> Option<(&str, &str)> {
    let p = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| p.find(m).map(|i| (&p[..i], &p[i + 1..])))
        .min_by_key(|(repo, _)| repo.len())
}

/// The PUT that completes a blob upload session.
pub(crate) fn is_blob_upload_put(head: &Head) -> bool {
    head.method == "PUT" && head.path().contains("/blobs/uploads/")
}

/// What one proxy's connections share.
pub(crate) struct Shared {
    pub(crate) opts: ProxyOptions,
    /// "127.0.0.1:PORT" (plain) or "https://127.0.0.1:PORT".
    pub(crate) upstream: String,
    /// The registry's real `Authorization` value (None: anonymous).
    pub(crate) upstream_auth: Option<String>,
    pub(crate) counters: Counters,
    dice: Dice,
    down: AtomicBool,
    /// With [`Repositories::Listed`]: name -> immutable tags.
    pub(crate) listed: Mutex<BTreeMap<String, bool>>,
    pub(crate) tokens: Mutex<TokenState>,
    pub(crate) rotated_at_upload: AtomicBool,
    /// Quota buckets and the ECR behaviours' counters.
    pub(crate) ecr: EcrState,
}

/// A running proxy in front of one registry. Stops accepting on drop.
pub struct FaultProxy {
    listener: Listener,
    pub(crate) shared: Arc<Shared>,
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
        let tls = opts.tls;
        let shared = Arc::new(Shared {
            upstream,
            upstream_auth,
            counters: Counters::default(),
            dice: Dice::default(),
            down: AtomicBool::new(false),
            listed: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(TokenState::new(opts.tokens)),
            rotated_at_upload: AtomicBool::new(false),
            ecr: EcrState::new(&opts.quotas),
            opts,
        });
        let serving = shared.clone();
        let listener = Listener::start("rig-fault-proxy", tls, move |conn| serving.serve(conn));
        FaultProxy { listener, shared }
    }

    pub fn host(&self) -> String {
        self.listener.host()
    }

    /// `http://127.0.0.1:PORT`, or `https://...` with [`ProxyOptions::tls`].
    pub fn url(&self) -> String {
        format!("{}://{}", self.shared.scheme(), self.host())
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

    /// The last `n` faults injected, as "kind METHOD path#occurrence".
    pub fn recent_faults(&self, n: usize) -> Vec<String> {
        self.shared.dice.recent(n)
    }

    /// Takes the registry down (every connection reset) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The current token, for a credential source (with `tokens` set).
    pub fn tokens(&self) -> TokenHandle {
        TokenHandle(self.shared.clone())
    }
}

impl Shared {
    /// "https" with [`ProxyOptions::tls`], else "http".
    fn scheme(&self) -> &'static str {
        if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

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
        let mut head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            // Not HTTP (a TLS ClientHello, say): a 400 and close, as Go's
            // net/http answers, so docker-registry and ECR's front agree.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                use std::io::Write as _;
                let mut out = reader.into_inner();
                return out.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            Err(e) => return Err(e),
        };
        if let Some(gate) = &self.opts.hold_blob_gets {
            if head.method == "GET" && head.path().contains("/blobs/") {
                gate.pass();
            }
        }
        let fault = self.dice.decide(self.opts.seed, &self.opts.rates, &head);
        if let Fault::Reset { cut } = fault {
            if self.reset_mid_request_body(&mut reader, &head, cut)? {
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
        if let Some(answer) = self.fault_before_work(fault, &head) {
            return answer.send(&mut out, &head);
        }
        if let Some(answer) = self.ecr_answer(&mut head, &body, auth.as_deref())? {
            return answer.send(&mut out, &head);
        }
        self.forward_with(fault, out, &head, &body, auth.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
