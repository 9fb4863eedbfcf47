//! ECR's own answers where they differ from docker-registry 2.8, given by
//! [`FaultProxy`] in front of a rig registry. Each is off in
//! [`ProxyOptions::default`](crate::ProxyOptions);
//! [`ProxyOptions::ecr`](crate::ProxyOptions::ecr) turns on the first two.
//! Sources are those named in `ecr-production-facts.md` (the team's notes).
//!
//! * **PATCH answered 201** and not forwarded: ECR's answer to an
//!   intermediate chunk, where the spec says 202 (aws/containers-roadmap#2831).
//! * **`NAME_UNKNOWN`** for repositories that were not created
//!   ([`Repositories`]): ECR has no implicit creation on push...
//! * ...unless a repository creation template with `CREATE_ON_PUSH` covers the
//!   name (since 2025-12;
//!   [`ProxyOptions::create_on_push`](crate::ProxyOptions::create_on_push)).
//!   A template's prefix is a namespace with an implied trailing `/` (`prod` covers
//!   `prod/app`, not `production`), `ROOT` covers every name (AWS API
//!   reference, `CreateRepositoryCreationTemplate`). The first upload POST or
//!   manifest PUT creates the repository, mutable; reads still get
//!   `NAME_UNKNOWN`.
//! * **Immutable tags** refused with 400 `TAG_INVALID`, even at the digest
//!   the tag already names (moby/buildkit#3776, aws/containers-roadmap#2380).
//! * **Short-lived tokens** ([`TokenRotation`]): rotated by request count and
//!   then refused with 401, or expiring on a clock and then refused with
//!   **403** `DENIED` "Your authorization token has expired", which is what
//!   ECR answers (deis/builder#426, CircleCI-Public/aws-ecr-orb#277,
//!   awslabs/amazon-ecr-credential-helper#7 and #679, flipt-io/flipt#3043):
//!   a client that refreshes only on 401 never recovers. [`crate::AwsFront`]
//!   hands such tokens out through `ecr:GetAuthorizationToken`.
//! * **Per-API rate quotas** ([`EcrQuotas`]; per account and region, Service
//!   Quotas "Amazon ECR"): a token bucket per API shared by all connections,
//!   burst equal to the rate. Over it: 429 `TOOMANYREQUESTS` "Rate exceeded"
//!   with **no `Retry-After`** (google/go-containerregistry#750,
//!   containerd/containerd#10447), not forwarded, and no token spent.
//! * **Referrer refusals**: media types with parameters
//!   (`application/vnd.dev.sigstore.bundle+json;version=0.2`) are refused
//!   (aws/containers-roadmap#2306, sigstore/sigstore-js#1058), and some OCI 1.1
//!   referrer manifests (with `subject`) get 405 (aws/containers-roadmap#2783);
//!   ECR's validation failures come back as 405 `UNSUPPORTED` (openai/tart#890).
//! * **Tags of 129–300 characters** aliased to short ones upstream, and
//!   over 300 refused with `TAG_INVALID`
//!   ([`ProxyOptions::long_tags`](crate::ProxyOptions::long_tags), on in
//!   `ecr()`): see `long_tags.rs`.
//! * **Blob mounts** ([`MountBehaviour`]): off until the account setting
//!   `BLOB_MOUNTING` is enabled, and while off the client gets a plain upload
//!   session (202) instead of a mount; a caller without
//!   `ecr:GetDownloadUrlForLayer` on the source may get 403 (inferred;
//!   aws/containers-roadmap#2860).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::Value;

use crate::fault_proxy::{
    basic, bump, error_json, respond, split_repo, token, FaultProxy, Head, ProxyStats, Shared,
    TOKEN_PREFIX,
};
use crate::registry::USER;

/// ECR's token lifetime, for tokens of modes that do not expire by time.
const ECR_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Short-lived credentials: the proxy accepts only `AWS:<token>` with a token
/// it handed out ([`TokenHandle`]) and refuses anything else. Requests it
/// lets through carry the registry's real credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRotation {
    /// A new token after every this many accepted requests; the old one then
    /// gets 401.
    EveryRequests(u64),
    /// The token rotates just as the first blob-upload PUT arrives, so that
    /// PUT (a streamed body the client cannot simply resend) gets 401.
    AtFirstBlobUpload,
    /// Tokens expire by the clock, as ECR's do: each is valid for `lifetime`
    /// from when it was issued ([`TokenHandle::issue`]; the first from the
    /// proxy's start), whether or not a newer one exists. Past that, a
    /// request carrying it gets ECR's 403 `DENIED` "Your authorization token
    /// has expired"; a token never issued gets 401.
    Expiring { lifetime: Duration },
}

/// Which repositories exist, for `NAME_UNKNOWN` and tag immutability.
#[derive(Debug, Clone)]
pub enum Repositories {
    /// All of them, mutable (docker-registry's own behaviour).
    Any,
    /// Only those added with [`FaultProxy::create_repository`] (or created
    /// on push).
    Listed,
    /// Those moto's ECR holds for this account and region, with their
    /// `imageTagMutability`, asked of moto on every request (and created in
    /// moto on push).
    Moto {
        url: String,
        account: String,
        region: String,
    },
}

/// What a cross-repository blob mount (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<repo>`) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountBehaviour {
    /// Passed to the registry, which mounts and answers 201.
    #[default]
    Forward,
    /// ECR with `BLOB_MOUNTING` off: `mount` and `from` are dropped and the
    /// registry sees a plain upload POST, so the client gets 202 and an
    /// upload session.
    Disabled,
    /// 403 `DENIED` (not authorized to perform `ecr:GetDownloadUrlForLayer`
    /// on the source repository), not forwarded.
    Denied,
}

/// The registry calls ECR meters, each standing for one ECR API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EcrApi {
    /// Manifest PUT, by tag or by digest.
    PutImage,
    /// `POST /v2/<repo>/blobs/uploads/`.
    InitiateLayerUpload,
    /// The final PUT to an upload session.
    CompleteLayerUpload,
    /// PATCH to an upload session.
    UploadLayerPart,
    /// Blob HEAD.
    BatchCheckLayerAvailability,
    /// Manifest GET or HEAD.
    BatchGetImage,
    /// Blob GET.
    GetDownloadUrlForLayer,
}

impl EcrApi {
    pub const ALL: [EcrApi; 7] = [
        EcrApi::PutImage,
        EcrApi::InitiateLayerUpload,
        EcrApi::CompleteLayerUpload,
        EcrApi::UploadLayerPart,
        EcrApi::BatchCheckLayerAvailability,
        EcrApi::BatchGetImage,
        EcrApi::GetDownloadUrlForLayer,
    ];

    /// The API a registry request counts against, if a metered one.
    pub fn of(method: &str, path: &str) -> Option<EcrApi> {
        let (_, rest) = split_repo(path)?;
        if rest.starts_with("manifests/") {
            return match method {
                "PUT" => Some(EcrApi::PutImage),
                "GET" | "HEAD" => Some(EcrApi::BatchGetImage),
                _ => None,
            };
        }
        if let Some(session) = rest.strip_prefix("blobs/uploads") {
            let session = session.trim_start_matches('/');
            return match (method, session.is_empty()) {
                ("POST", true) => Some(EcrApi::InitiateLayerUpload),
                ("PUT", false) => Some(EcrApi::CompleteLayerUpload),
                ("PATCH", false) => Some(EcrApi::UploadLayerPart),
                _ => None,
            };
        }
        if rest.starts_with("blobs/") {
            return match method {
                "HEAD" => Some(EcrApi::BatchCheckLayerAvailability),
                "GET" => Some(EcrApi::GetDownloadUrlForLayer),
                _ => None,
            };
        }
        None
    }

    /// ECR's name for it, as in Service Quotas.
    pub fn name(self) -> &'static str {
        match self {
            EcrApi::PutImage => "PutImage",
            EcrApi::InitiateLayerUpload => "InitiateLayerUpload",
            EcrApi::CompleteLayerUpload => "CompleteLayerUpload",
            EcrApi::UploadLayerPart => "UploadLayerPart",
            EcrApi::BatchCheckLayerAvailability => "BatchCheckLayerAvailability",
            EcrApi::BatchGetImage => "BatchGetImage",
            EcrApi::GetDownloadUrlForLayer => "GetDownloadUrlForLayer",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests per second allowed per API (`None`: unmetered), each a token
/// bucket holding one second's worth (burst = rate, at least 1), refilled
/// continuously and shared by every connection of the proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcrQuotas {
    pub put_image: Option<f64>,
    pub initiate_layer_upload: Option<f64>,
    pub complete_layer_upload: Option<f64>,
    pub upload_layer_part: Option<f64>,
    pub batch_check_layer_availability: Option<f64>,
    pub batch_get_image: Option<f64>,
    pub get_download_url_for_layer: Option<f64>,
}

impl EcrQuotas {
    /// ECR's default quotas per account and region.
    pub fn ecr_defaults() -> Self {
        EcrQuotas {
            put_image: Some(10.0),
            initiate_layer_upload: Some(100.0),
            complete_layer_upload: Some(100.0),
            upload_layer_part: Some(500.0),
            batch_check_layer_availability: Some(1000.0),
            batch_get_image: Some(2000.0),
            get_download_url_for_layer: Some(3000.0),
        }
    }

    /// The quota of `api`, requests per second.
    pub fn rate(&self, api: EcrApi) -> Option<f64> {
        match api {
            EcrApi::PutImage => self.put_image,
            EcrApi::InitiateLayerUpload => self.initiate_layer_upload,
            EcrApi::CompleteLayerUpload => self.complete_layer_upload,
            EcrApi::UploadLayerPart => self.upload_layer_part,
            EcrApi::BatchCheckLayerAvailability => self.batch_check_layer_availability,
            EcrApi::BatchGetImage => self.batch_get_image,
            EcrApi::GetDownloadUrlForLayer => self.get_download_url_for_layer,
        }
    }
}

/// A token bucket: `capacity` tokens at most, `rate` added per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// Full, so a burst of `rate` passes at once.
    pub(crate) fn new(rate: f64, now: Instant) -> Self {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    /// Takes a token if there is one; a refusal takes nothing.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counters of the behaviours in this module (see [`ProxyStats`]).
#[derive(Default)]
pub(crate) struct EcrCounters {
    pub(crate) manifest_puts_forwarded: AtomicU64,
    pub(crate) expired_tokens: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) referrers_refused: AtomicU64,
    pub(crate) created_on_push: AtomicU64,
    pub(crate) mounts_refused: AtomicU64,
    pub(crate) long_tags_aliased: AtomicU64,
    pub(crate) long_tags_refused: AtomicU64,
}

/// Quota buckets and counters, one per proxy.
pub(crate) struct EcrState {
    buckets: Mutex<BTreeMap<EcrApi, TokenBucket>>,
    throttled: [AtomicU64; 7],
    /// Quota refusals per (API, request path): a request and its retries
    /// share a path.
    throttled_paths: Mutex<HashMap<(EcrApi, String), u64>>,
    pub(crate) counters: EcrCounters,
    /// Alias -> long tag, for every long tag this front aliased.
    pub(crate) long_tags: Mutex<HashMap<String, String>>,
}

impl EcrState {
    pub(crate) fn new(quotas: &EcrQuotas) -> Self {
        let now = Instant::now();
        let buckets = EcrApi::ALL
            .iter()
            .filter_map(|&api| quotas.rate(api).map(|r| (api, TokenBucket::new(r, now))))
            .collect();
        EcrState {
            buckets: Mutex::new(buckets),
            throttled: Default::default(),
            throttled_paths: Mutex::new(HashMap::new()),
            counters: EcrCounters::default(),
            long_tags: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn fill(&self, stats: &mut ProxyStats) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        stats.manifest_puts_forwarded = g(&c.manifest_puts_forwarded);
        stats.quota_throttled = self.throttled.iter().map(g).sum();
        stats.put_image_throttled = g(&self.throttled[EcrApi::PutImage.index()]);
        stats.expired_tokens = g(&c.expired_tokens);
        stats.tokens_issued = g(&c.tokens_issued);
        stats.referrers_refused = g(&c.referrers_refused);
        stats.created_on_push = g(&c.created_on_push);
        stats.mounts_refused = g(&c.mounts_refused);
        stats.long_tags_aliased = g(&c.long_tags_aliased);
        stats.long_tags_refused = g(&c.long_tags_refused);
    }
}

/// Token generations handed out, and (expiring mode) until when each is good.
pub(crate) struct TokenState {
    pub(crate) generation: u64,
    /// Requests accepted since the last rotation.
    pub(crate) accepted: u64,
    expiries: BTreeMap<u64, Instant>,
    lifetime: Option<Duration>,
}

impl TokenState {
    pub(crate) fn new(rotation: Option<TokenRotation>) -> Self {
        let lifetime = match rotation {
            Some(TokenRotation::Expiring { lifetime }) => Some(lifetime),
            _ => None,
        };
        let mut expiries = BTreeMap::new();
        if let Some(l) = lifetime {
            expiries.insert(0, Instant::now() + l);
        }
        TokenState {
            generation: 0,
            accepted: 0,
            expiries,
            lifetime,
        }
    }

    fn rotate(&mut self) {
        self.generation += 1;
        self.accepted = 0;
    }
}

/// Hands out the proxy's tokens (for a credential source under test, or for
/// [`crate::AwsFront`] to answer `GetAuthorizationToken` with).
#[derive(Clone)]
pub struct TokenHandle(pub(crate) std::sync::Arc<Shared>);

impl TokenHandle {
    /// (user, password) of the newest token.
    pub fn current(&self) -> (String, String) {
        let generation = self.0.tokens.lock().expect("tokens").generation;
        (USER.to_string(), token(generation))
    }

    /// With [`TokenRotation::Expiring`]: a new token, valid for `lifetime`
    /// from now (older ones stay valid until their own expiry). Other modes:
    /// the current token, with a nominal ECR expiry 12 hours out.
    /// Returns (user, password, expires at).
    pub fn issue(&self) -> (String, String, SystemTime) {
        let mut tokens = self.0.tokens.lock().expect("tokens");
        let Some(lifetime) = tokens.lifetime else {
            return (
                USER.to_string(),
                token(tokens.generation),
                SystemTime::now() + ECR_TOKEN_LIFETIME,
            );
        };
        tokens.rotate();
        let g = tokens.generation;
        tokens.expiries.insert(g, Instant::now() + lifetime);
        bump(&self.0.ecr.counters.tokens_issued);
        (USER.to_string(), token(g), SystemTime::now() + lifetime)
    }

    /// The current token counts as expired from now (403 in
    /// [`TokenRotation::Expiring`] mode). In the count-based modes it is
    /// replaced instead, so it gets their 401.
    pub fn expire_now(&self) {
        let mut tokens = self.0.tokens.lock().expect("tokens");
        if tokens.lifetime.is_some() {
            let g = tokens.generation;
            let now = Instant::now();
            let e = tokens.expiries.entry(g).or_insert(now);
            *e = (*e).min(now);
        } else {
            tokens.rotate();
            bump(&self.0.counters.rotations);
        }
    }
}

impl std::fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHandle(<redacted>)")
    }
}

impl FaultProxy {
    /// Requests refused by the quota of `api` so far.
    pub fn quota_throttled(&self, api: EcrApi) -> u64 {
        self.shared.ecr.throttled[api.index()].load(Ordering::Relaxed)
    }

    /// The most quota refusals of `api` that one request path met so far
    /// (a manifest PUT and its retries share a path): how many times one
    /// request was throttled before it got through, or gave up.
    pub fn quota_throttled_most(&self, api: EcrApi) -> u64 {
        let paths = self
            .shared
            .ecr
            .throttled_paths
            .lock()
            .expect("throttled paths");
        paths
            .iter()
            .filter(|((a, _), _)| *a == api)
            .map(|(_, &n)| n)
            .max()
            .unwrap_or(0)
    }
}

/// An answer the proxy gives itself.
pub(crate) struct Answer {
    pub(crate) status: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn error(status: &'static str, code: &str, message: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: error_json(code, message),
        }
    }

    pub(crate) fn send(&self, out: &mut impl std::io::Write, head: &Head) -> io::Result<()> {
        respond(out, head, self.status, &self.headers, &self.body)
    }
}

/// `AWS:<password>` out of a Basic `Authorization` value.
fn basic_password(header: &str) -> Option<String> {
    let b64 = header.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == USER).then(|| password.to_string())
}

/// A media type with parameters (`type/subtype;param=value`) among the
/// request's `Content-Type` and the manifest's media types and `artifactType`.
pub(crate) fn parameterised_media_type(content_type: Option<&str>, doc: &Value) -> Option<String> {
    let mut candidates: Vec<&str> = content_type.into_iter().collect();
    for v in [
        &doc["mediaType"],
        &doc["artifactType"],
        &doc["config"]["mediaType"],
    ] {
        candidates.extend(v.as_str());
    }
    for layer in doc["layers"].as_array().into_iter().flatten() {
        candidates.extend(layer["mediaType"].as_str());
    }
    candidates
        .into_iter()
        .find(|m| m.contains(';'))
        .map(str::to_string)
}

/// Whether a creation template with `prefix` covers repository `name`.
pub(crate) fn template_covers(prefix: &str, name: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || p == "ROOT"
        || name
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Shared {
    /// The registry's credentials to send upstream when the request may
    /// pass; else the refusal (401, or 403 for an expired token).
    pub(crate) fn authorize(&self, head: &Head) -> Result<Option<String>, Answer> {
        let unauthorized = || Answer {
            status: "401 Unauthorized",
            headers: vec![(
                "WWW-Authenticate",
                "Basic realm=\"rig-fault-proxy\"".to_string(),
            )],
            body: error_json("UNAUTHORIZED", "authentication required"),
        };
        let Some(rotation) = self.opts.tokens else {
            // Pass the client's own credentials through.
            return Ok(head.header("authorization").map(str::to_string));
        };
        let given = head.header("authorization").unwrap_or("");
        let mut tokens = self.tokens.lock().expect("tokens");
        if let TokenRotation::Expiring { .. } = rotation {
            let generation = basic_password(given)
                .and_then(|p| p.strip_prefix(TOKEN_PREFIX)?.parse::<u64>().ok())
                .filter(|g| given == basic(USER, &token(*g)));
            let Some(&expiry) = generation.and_then(|g| tokens.expiries.get(&g)) else {
                bump(&self.counters.unauthorized);
                return Err(unauthorized());
            };
            if Instant::now() >= expiry {
                bump(&self.ecr.counters.expired_tokens);
                return Err(Answer::error(
                    "403 Forbidden",
                    "DENIED",
                    "Your authorization token has expired. Reauthenticate and try again.",
                ));
            }
            tokens.accepted += 1;
            return Ok(self.upstream_auth.clone());
        }
        if rotation == TokenRotation::AtFirstBlobUpload
            && head.is_blob_upload_put()
            && !self.rotated_at_upload.swap(true, Ordering::SeqCst)
        {
            tokens.rotate();
            bump(&self.counters.rotations);
        }
        if given != basic(USER, &token(tokens.generation)) {
            bump(&self.counters.unauthorized);
            if (0..tokens.generation).any(|g| given == basic(USER, &token(g))) {
                bump(&self.counters.stale_tokens);
            }
            return Err(unauthorized());
        }
        tokens.accepted += 1;
        if let TokenRotation::EveryRequests(k) = rotation {
            if tokens.accepted >= k.max(1) {
                tokens.rotate();
                bump(&self.counters.rotations);
            }
        }
        Ok(self.upstream_auth.clone())
    }

    /// ECR's 429 when the request's API is over its quota (no token spent);
    /// None (a token spent) when it may pass.
    pub(crate) fn over_quota(&self, head: &Head) -> Option<Answer> {
        let api = EcrApi::of(&head.method, head.path())?;
        let mut buckets = self.ecr.buckets.lock().expect("quota buckets");
        let bucket = buckets.get_mut(&api)?;
        if bucket.try_take(Instant::now()) {
            return None;
        }
        bump(&self.ecr.throttled[api.index()]);
        *self
            .ecr
            .throttled_paths
            .lock()
            .expect("throttled paths")
            .entry((api, head.path().to_string()))
            .or_insert(0) += 1;
        Some(Answer::error(
            "429 Too Many Requests",
            "TOOMANYREQUESTS",
            "Rate exceeded",
        ))
    }

    /// ECR's own answers, where they differ from docker-registry's. May
    /// rewrite the request (a mount made a plain upload) before it goes on.
    pub(crate) fn ecr_answer(
        &self,
        head: &mut Head,
        body: &[u8],
        auth: Option<&str>,
    ) -> io::Result<Option<Answer>> {
        if head.method == "PATCH" {
            bump(&self.counters.patches);
            if self.opts.patch_201 {
                return Ok(Some(Answer {
                    status: "201 Created",
                    headers: Vec::new(),
                    body: Vec::new(),
                }));
            }
        }
        if let Some(refusal) = self.alias_long_tag(head) {
            return Ok(Some(refusal));
        }
        let Some((repo, rest)) = split_repo(head.path()) else {
            return Ok(None);
        };
        let (repo, rest) = (repo.to_string(), rest.to_string());
        let manifest_put = head.method == "PUT" && rest.starts_with("manifests/");
        let upload_post = head.method == "POST" && rest.trim_end_matches('/') == "blobs/uploads";
        let existing = self.repository(&repo);
        let create = existing.is_none()
            && (manifest_put || upload_post)
            && self
                .opts
                .create_on_push
                .iter()
                .any(|p| template_covers(p, &repo));
        if existing.is_none() && !create {
            bump(&self.counters.name_unknown);
            let msg = format!(
                "The repository with name '{repo}' does not exist in the registry with id '{}'",
                self.account()
            );
            return Ok(Some(Answer::error("404 Not Found", "NAME_UNKNOWN", &msg)));
        }
        if manifest_put {
            if let Some(refusal) = self.manifest_refusal(head, body) {
                bump(&self.ecr.counters.referrers_refused);
                return Ok(Some(refusal));
            }
        }
        if create {
            self.create_on_push(&repo);
        }
        if upload_post {
            return Ok(self.mount_answer(head, &repo));
        }
        let immutable = existing.unwrap_or(false);
        let Some(reference) = rest.strip_prefix("manifests/") else {
            return Ok(None);
        };
        if !manifest_put || !immutable || reference.starts_with("sha256:") {
            return Ok(None);
        }
        // ECR refuses any PUT to an existing tag of an immutable repository,
        // even one naming the digest the tag already has.
        let exists = self.upstream_has_manifest(&repo, reference, auth)?;
        if !exists && self.opts.tag_race {
            // A concurrent writer gets there first.
            self.forward(head, body, auth)?;
        } else if !exists {
            return Ok(None);
        }
        bump(&self.counters.tag_refusals);
        let msg = format!(
            "The image tag '{reference}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
        );
        Ok(Some(Answer::error("400 Bad Request", "TAG_INVALID", &msg)))
    }

    /// 405 `UNSUPPORTED` for a manifest ECR would not take.
    fn manifest_refusal(&self, head: &Head, body: &[u8]) -> Option<Answer> {
        if !self.opts.refuse_media_type_parameters && !self.opts.refuse_referrers {
            return None;
        }
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if self.opts.refuse_media_type_parameters {
            if let Some(mt) = parameterised_media_type(head.header("content-type"), &doc) {
                let msg = format!(
                    "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Unsupported media type {mt}: media types with parameters are not supported'"
                );
                return Some(Answer::error("405 Method Not Allowed", "UNSUPPORTED", &msg));
            }
        }
        if self.opts.refuse_referrers && doc.get("subject").is_some_and(|s| !s.is_null()) {
            let msg = "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Manifests with a subject (OCI 1.1 referrers) are not supported'";
            return Some(Answer::error("405 Method Not Allowed", "UNSUPPORTED", msg));
        }
        None
    }

    /// Creates a missing repository (mutable) for a push a template covers.
    fn create_on_push(&self, repo: &str) {
        let created = match &self.opts.repositories {
            Repositories::Any => false,
            Repositories::Listed => {
                let mut listed = self.listed.lock().expect("repositories");
                let new = !listed.contains_key(repo);
                listed.entry(repo.to_string()).or_insert(false);
                new
            }
            Repositories::Moto {
                url,
                account,
                region,
            } => {
                // One creation at a time: concurrent blob POSTs all meet the
                // missing repository, and moto's CreateRepository is
                // check-then-insert, so two racing calls can both "create".
                let _one_at_a_time = self.listed.lock().expect("repositories");
                moto_repository(url, account, region, repo).is_none()
                    && moto_create_repository(url, account, region, repo)
            }
        };
        if created {
            bump(&self.ecr.counters.created_on_push);
        }
    }

    /// With a mount (`?mount=&from=`) and [`MountBehaviour`] other than
    /// `Forward`: makes it a plain upload, or refuses it.
    fn mount_answer(&self, head: &mut Head, repo: &str) -> Option<Answer> {
        if self.opts.mount == MountBehaviour::Forward {
            return None;
        }
        let (path, query) = head.target.split_once('?')?;
        let params: Vec<&str> = query.split('&').collect();
        params.iter().find(|p| p.starts_with("mount="))?;
        bump(&self.ecr.counters.mounts_refused);
        match self.opts.mount {
            MountBehaviour::Forward => None,
            MountBehaviour::Disabled => {
                let kept: Vec<&str> = params
                    .iter()
                    .copied()
                    .filter(|p| {
                        !p.starts_with("mount=") && !p.starts_with("from=") && !p.is_empty()
                    })
                    .collect();
                head.target = if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                None
            }
            MountBehaviour::Denied => {
                let from = params
                    .iter()
                    .find_map(|p| p.strip_prefix("from="))
                    .unwrap_or(repo)
                    .replace("%2F", "/")
                    .replace("%2f", "/");
                let (account, region) = (self.account(), self.region());
                let msg = format!(
                    "User: arn:aws:sts::{account}:assumed-role/ecr-bridge-replicator/rig is not authorized to perform: ecr:GetDownloadUrlForLayer on resource: arn:aws:ecr:{region}:{account}:repository/{from} because no identity-based policy allows the ecr:GetDownloadUrlForLayer action"
                );
                Some(Answer::error("403 Forbidden", "DENIED", &msg))
            }
        }
    }

    fn account(&self) -> String {
        match &self.opts.repositories {
            Repositories::Moto { account, .. } => account.clone(),
            _ => "000000000000".into(),
        }
    }

    fn region(&self) -> String {
        match &self.opts.repositories {
            Repositories::Moto { region, .. } => region.clone(),
            _ => "us-east-1".into(),
        }
    }

    /// `Some(immutable)` when the repository exists.
    fn repository(&self, name: &str) -> Option<bool> {
        match &self.opts.repositories {
            Repositories::Any => Some(false),
            Repositories::Listed => self.listed.lock().expect("repositories").get(name).copied(),
            Repositories::Moto {
                url,
                account,
                region,
            } => moto_repository(url, account, region, name),
        }
    }

    fn upstream_has_manifest(
        &self,
        repo: &str,
        reference: &str,
        auth: Option<&str>,
    ) -> io::Result<bool> {
        let accept = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let mut headers = vec![("Accept", accept.as_str())];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let r = crate::http::request(
            &self.upstream,
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &headers,
            b"",
        )?;
        Ok(r.status == 200)
    }
}

/// One ECR JSON call to moto, acting in `account` (moto's
/// `x-moto-account-id` header) and `region` (the SigV4 credential scope).
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
    let r = crate::http::request(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_registry_routes_when_classified_then_each_maps_to_the_ecr_api_it_stands_for() {
        let cases = [
            ("PUT", "/v2/team/app/manifests/v1", Some(EcrApi::PutImage)),
            ("PUT", "/v2/app/manifests/sha256:ab", Some(EcrApi::PutImage)),
            ("GET", "/v2/app/manifests/v1", Some(EcrApi::BatchGetImage)),
            ("HEAD", "/v2/app/manifests/v1", Some(EcrApi::BatchGetImage)),
            ("DELETE", "/v2/app/manifests/sha256:ab", None),
            (
                "POST",
                "/v2/team/app/blobs/uploads/",
                Some(EcrApi::InitiateLayerUpload),
            ),
            (
                "PUT",
                "/v2/app/blobs/uploads/5e1f-uuid",
                Some(EcrApi::CompleteLayerUpload),
            ),
            (
                "PATCH",
                "/v2/app/blobs/uploads/5e1f-uuid",
                Some(EcrApi::UploadLayerPart),
            ),
            ("GET", "/v2/app/blobs/uploads/5e1f-uuid", None),
            (
                "HEAD",
                "/v2/app/blobs/sha256:ab",
                Some(EcrApi::BatchCheckLayerAvailability),
            ),
            (
                "GET",
                "/v2/app/blobs/sha256:ab",
                Some(EcrApi::GetDownloadUrlForLayer),
            ),
            ("GET", "/v2/app/tags/list", None),
            ("GET", "/v2/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(EcrApi::of(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn given_a_bucket_when_drained_then_refusals_take_nothing_and_it_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4.0, t0);
        // Burst = rate.
        assert_eq!((0..6).filter(|_| b.try_take(t0)).count(), 4);
        // A thousand refusals later, a quarter second still buys one token:
        // the refusals took nothing.
        for _ in 0..1000 {
            assert!(!b.try_take(t0 + Duration::from_millis(10)));
        }
        assert!(b.try_take(t0 + Duration::from_millis(250)));
        assert!(!b.try_take(t0 + Duration::from_millis(260)));
        // Never more than one second's worth, however long it rested.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 4);
        // A rate under 1/s still lets one request through.
        let mut slow = TokenBucket::new(0.5, t0);
        assert!(slow.try_take(t0));
        assert!(!slow.try_take(t0 + Duration::from_secs(1)));
        assert!(slow.try_take(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn given_ecr_defaults_then_each_api_has_its_documented_quota() {
        let q = EcrQuotas::ecr_defaults();
        let got: Vec<_> = EcrApi::ALL.iter().map(|&a| q.rate(a)).collect();
        let want = [10.0, 100.0, 100.0, 500.0, 1000.0, 2000.0, 3000.0].map(Some);
        assert_eq!(got, want);
        assert!(EcrApi::ALL
            .iter()
            .all(|&a| EcrQuotas::default().rate(a).is_none()));
    }

    #[test]
    fn given_manifests_when_media_types_are_checked_then_any_with_parameters_is_found() {
        let plain = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json"},
            "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}]
        });
        assert_eq!(
            parameterised_media_type(Some("application/vnd.oci.image.manifest.v1+json"), &plain),
            None
        );
        let bundle = "application/vnd.dev.sigstore.bundle+json;version=0.2";
        for pointer in [
            "/artifactType",
            "/config/mediaType",
            "/layers/0/mediaType",
            "/mediaType",
        ] {
            let mut doc = plain.clone();
            *doc.pointer_mut(pointer).unwrap() = Value::from(bundle);
            assert_eq!(
                parameterised_media_type(None, &doc).as_deref(),
                Some(bundle),
                "{pointer}"
            );
        }
        let ct = "application/vnd.oci.image.manifest.v1+json; charset=utf-8";
        assert_eq!(
            parameterised_media_type(Some(ct), &plain).as_deref(),
            Some(ct)
        );
    }

    #[test]
    fn given_template_prefixes_when_matched_then_they_cover_whole_namespaces_only() {
        assert!(template_covers("", "app"));
        assert!(template_covers("ROOT", "team/app"));
        assert!(template_covers("prod", "prod/app"));
        assert!(template_covers("prod/", "prod/team/app"));
        assert!(template_covers("prod/team", "prod/team/app"));
        assert!(!template_covers("prod", "production/app"));
        assert!(!template_covers("prod", "prod"));
        assert!(!template_covers("prod/team", "prod/app"));
    }
}
