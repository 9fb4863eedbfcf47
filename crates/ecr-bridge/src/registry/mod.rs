//! A small client for the OCI distribution API, the one ECR serves at
//! `<account>.dkr.ecr.<region>.amazonaws.com`.
//!
//! It owns what every call needs and nothing else: credentials (asked of
//! their source for every request, sent only to URLs on its own registry,
//! refreshed once on 401 or on ECR's expired-token 403), a rate limiter per
//! host and API that learns the registry's quotas, bounded retries with
//! backoff (throttling waited out by time, not counted), a deadline no wait
//! or timeout runs past, redirect handling that drops `Authorization` when
//! the host changes (ECR sends blob GETs to S3), and a trace line per
//! request that never shows credentials or query strings (presigned URLs
//! carry signatures there). The copy logic lives above it, in [`crate::copy`].

mod auth;
mod endpoint;
mod error;
mod redirect;
mod retry;
mod throttle;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use redirect::MAX_REDIRECTS;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
};
use reqwest::{Method, StatusCode};
use url::Url;

pub use auth::{BasicCredentials, CredentialSource, StaticCredentials};
pub use endpoint::{host_is_loopback, Endpoint};
use error::error_message;
pub use error::{ErrorBody, RegistryError};
pub use retry::{parse_retry_after, RetryPolicy, RetryState, MAX_SERVER_WAIT};
pub use throttle::{limiter, AdaptiveRate, ApiClass, Limiter};

use crate::digest::Digest;
use crate::manifest::{ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How long to wait for what. Uploads get a deadline that grows with their
/// size, because a registry (ECR, S3 behind it) may take a while to answer
/// after the last byte of a large blob.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending a request to its response headers (everything but uploads).
    pub response: Duration,
    /// The longest pause while reading a response body.
    pub idle_read: Duration,
    /// Upload deadline: `upload_base + size / upload_min_bytes_per_sec`.
    pub upload_base: Duration,
    pub upload_min_bytes_per_sec: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(60),
            idle_read: Duration::from_secs(60),
            upload_base: Duration::from_secs(300),
            upload_min_bytes_per_sec: 1024 * 1024,
        }
    }
}

impl Timeouts {
    pub fn upload_deadline(&self, size: u64) -> Duration {
        self.upload_base + Duration::from_secs(size / self.upload_min_bytes_per_sec.max(1))
    }
}

/// The HTTP client all registries of a process share (one connection pool).
/// HTTP/1.1 only: each concurrent blob gets its own connection instead of
/// sharing one HTTP/2 flow-control window.
pub fn http_client(timeouts: &Timeouts) -> Result<reqwest::Client, RegistryError> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("ecr-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::InvalidEndpoint {
            endpoint: String::new(),
            reason: format!("cannot build HTTP client: {e}"),
        })
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    /// The `Content-Type` the registry sent.
    pub media_type: Option<String>,
}

/// What a HEAD on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
}

/// The start of a blob upload.
#[derive(Debug)]
pub enum UploadStart {
    /// The registry linked the blob from another repository: nothing to send.
    Mounted,
    /// Send the content to this upload session.
    Session(Url),
}

/// A blob's content, streamed.
pub struct BlobReader {
    pub size: Option<u64>,
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
}

/// Client of one registry.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    inner: Arc<Inner>,
    /// When every request of this handle must be over: no wait, timeout or
    /// retry runs past it (see [`RegistryClient::with_deadline`]).
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: Arc<dyn CredentialSource>,
    retry: RetryPolicy,
    timeouts: Timeouts,
}

/// What a 404 means for a request.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Manifest(&'a str),
    Blob(&'a Digest),
    Upload,
}

impl RegistryClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: Endpoint,
        credentials: Arc<dyn CredentialSource>,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> Self {
        RegistryClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                credentials,
                retry,
                timeouts,
            }),
            deadline: None,
        }
    }

    /// The same client (same connections, credentials and limits) whose
    /// requests all end by `deadline`: a request that cannot start before
    /// it fails with [`RegistryError::DeadlineReached`] (retryable), and
    /// timeouts and waits are cut to fit.
    pub fn with_deadline(&self, deadline: Option<Instant>) -> RegistryClient {
        RegistryClient {
            inner: self.inner.clone(),
            deadline,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A retry budget for an operation above single requests (a whole
    /// blob), ending at this handle's deadline.
    pub fn retry_state(&self) -> RetryState<'_> {
        self.inner.retry.start_until(self.deadline)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Checks that the registry answers and accepts our credentials.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let url = self.inner.endpoint.v2("");
        let resp = self
            .execute(Method::GET, url, HeaderMap::new(), None)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.error_from(resp, "GET /v2/", "", Subject::Upload).await)
        }
    }

    /// HEAD a manifest by tag or digest. `None` when it (or the repository) does not exist.
    pub async fn manifest_head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/manifests/{reference}"));
        let resp = self
            .execute(Method::HEAD, url, accept_manifests(), None)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(ManifestHead {
                digest: header_digest(&resp),
                media_type: header_str(&resp, CONTENT_TYPE.as_str()),
            })),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .error_from(
                    resp,
                    "HEAD manifest",
                    repository,
                    Subject::Manifest(reference),
                )
                .await),
        }
    }

    /// GET a manifest with every supported type in `Accept`, so the registry
    /// serves it as stored rather than converted.
    pub async fn manifest_get(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/manifests/{reference}"));
        let request = format!(
            "GET {}/{repository}/manifests/{reference}",
            self.inner.endpoint.authority()
        );
        // A body cut short (connection reset, early close) is retried like a
        // failed request: a manifest is small and can simply be read again.
        let mut retry = self.retry_state();
        loop {
            let resp = self
                .execute(Method::GET, url.clone(), accept_manifests(), None)
                .await?;
            if !resp.status().is_success() {
                return Err(self
                    .error_from(
                        resp,
                        "GET manifest",
                        repository,
                        Subject::Manifest(reference),
                    )
                    .await);
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
            {
                return Err(RegistryError::Protocol {
                    request,
                    reason: format!("manifest larger than {MAX_MANIFEST_BYTES} bytes"),
                });
            }
            let media_type = header_str(&resp, CONTENT_TYPE.as_str());
            match self.read_limited(resp, MAX_MANIFEST_BYTES, &request).await {
                Ok(bytes) => return Ok(FetchedManifest { bytes, media_type }),
                Err(e) if e.is_retryable() => match retry.next_delay(None) {
                    Some(delay) => {
                        tracing::debug!(%request, delay_ms = delay.as_millis() as u64, error = %e, "manifest body failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// PUT a manifest's exact bytes under a digest or tag.
    pub async fn manifest_put(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::Protocol {
                request: format!("PUT manifest {reference}"),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?,
        );
        let resp = self.execute(Method::PUT, url, headers, Some(bytes)).await?;
        if resp.status().is_success() {
            Ok(header_digest(&resp))
        } else {
            Err(self
                .error_from(
                    resp,
                    "PUT manifest",
                    repository,
                    Subject::Manifest(reference),
                )
                .await)
        }
    }

    /// DELETE a manifest by digest (or a tag, where the registry allows it).
    /// `false` when it was already gone.
    pub async fn manifest_delete(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<bool, RegistryError> {
        let url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/manifests/{reference}"));
        let resp = self
            .execute(Method::DELETE, url, HeaderMap::new(), None)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .error_from(
                    resp,
                    "DELETE manifest",
                    repository,
                    Subject::Manifest(reference),
                )
                .await),
        }
    }

    /// HEAD a blob: its size when present.
    pub async fn blob_head(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/blobs/{digest}"));
        let mut resp = self
            .execute(Method::HEAD, url, HeaderMap::new(), None)
            .await?;
        // Some registries redirect a HEAD too; a redirect means the blob exists.
        let mut hops = 0;
        while resp.status().is_redirection() && hops < MAX_REDIRECTS {
            let Some(next) = redirect::redirect_target(&self.inner.endpoint, "HEAD", &resp)? else {
                break;
            };
            resp = self
                .execute(Method::HEAD, next, HeaderMap::new(), None)
                .await?;
            hops += 1;
        }
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .error_from(resp, "HEAD blob", repository, Subject::Blob(digest))
                .await),
        }
    }

    /// GET a blob as a stream. Redirects (ECR: to presigned S3 URLs) are
    /// followed without our `Authorization` header.
    pub async fn blob_get(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<BlobReader, RegistryError> {
        let mut url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/blobs/{digest}"));
        let mut hops = 0;
        loop {
            let resp = self
                .execute(Method::GET, url.clone(), HeaderMap::new(), None)
                .await?;
            let status = resp.status();
            if status.is_redirection() && hops < MAX_REDIRECTS {
                if let Some(next) = redirect::redirect_target(&self.inner.endpoint, "GET", &resp)? {
                    url = next;
                    hops += 1;
                    continue;
                }
            }
            if !status.is_success() {
                return Err(self
                    .error_from(resp, "GET blob", repository, Subject::Blob(digest))
                    .await);
            }
            let request = format!(
                "GET {}/{repository}/blobs/{digest}",
                self.inner.endpoint.authority()
            );
            return Ok(BlobReader {
                size: resp.content_length(),
                stream: Box::pin(IdleTimeoutStream::new(
                    resp,
                    self.inner.timeouts.idle_read,
                    request,
                )),
            });
        }
    }

    /// Opens an upload; with `mount`, asks the registry to link the blob from
    /// another repository of the same registry instead.
    pub async fn upload_start(
        &self,
        repository: &str,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart, RegistryError> {
        let mut url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/blobs/uploads/"));
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let resp = match self
            .execute(
                Method::POST,
                url.clone(),
                HeaderMap::new(),
                Some(Bytes::new()),
            )
            .await
        {
            // ECR refuses a mount the caller may not read the source of
            // (ecr:GetDownloadUrlForLayer) with 403: the blob can still be
            // uploaded, so ask again without the mount.
            Err(RegistryError::Denied { message, .. }) if mount.is_some() => {
                tracing::debug!(repository, message = %message, "mount refused; uploading instead");
                return Box::pin(self.upload_start(repository, None)).await;
            }
            other => other?,
        };
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let request = format!(
                    "POST {}/{repository}/blobs/uploads/",
                    self.inner.endpoint.authority()
                );
                let location = header_str(&resp, LOCATION.as_str()).ok_or_else(|| {
                    RegistryError::Protocol {
                        request: request.clone(),
                        reason: "202 without Location".into(),
                    }
                })?;
                // The upload's bytes go wherever this points: the endpoint's
                // HTTPS rule applies to it as to the endpoint itself.
                let session = redirect::follow(
                    &self.inner.endpoint,
                    &request,
                    "upload Location",
                    &url,
                    &location,
                )?;
                Ok(UploadStart::Session(session))
            }
            _ => Err(self
                .error_from(resp, "POST upload", repository, Subject::Upload)
                .await),
        }
    }

    /// Completes an upload session with the whole blob in one streaming PUT
    /// with `Content-Length` (never chunked PATCHes: ECR mishandles them).
    /// Not retried here: a stream cannot be replayed; the caller starts over
    /// from the source.
    pub async fn upload_put(
        &self,
        repository: &str,
        session: Url,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), RegistryError> {
        let mut url = session;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let request = format!(
            "PUT {}/{repository}/blobs/uploads/ ({digest})",
            self.inner.endpoint.authority()
        );
        let mut req = self
            .inner
            .http
            .put(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(body);
        if let Some(h) = self.auth_for(&url, false).await? {
            req = req.header(AUTHORIZATION, h);
        }
        let limiter = throttle::limiter(&host_port(&url), ApiClass::CompleteUpload);
        self.wait_for_turn(&limiter, &request).await?;
        let started = Instant::now();
        let (waited, by_deadline) = self.cut_to_deadline(self.inner.timeouts.upload_deadline(size));
        let result = tokio::time::timeout(waited, req.send()).await;
        let resp = match result {
            Err(_) if by_deadline => {
                trace_request(&Method::PUT, &url, None, size, started, 1);
                return Err(RegistryError::DeadlineReached {
                    request,
                    left: self.time_left().unwrap_or_default(),
                });
            }
            Err(_) => {
                return Err(RegistryError::Timeout {
                    request,
                    waited,
                    phase: "uploading the blob and waiting for the answer",
                })
            }
            Ok(Err(e)) => {
                trace_request(&Method::PUT, &url, None, size, started, 1);
                return Err(RegistryError::transport(request, e));
            }
            Ok(Ok(resp)) => resp,
        };
        trace_request(&Method::PUT, &url, Some(resp.status()), size, started, 1);
        match resp.status() {
            StatusCode::TOO_MANY_REQUESTS => limiter.on_throttle(),
            s if !s.is_server_error() => limiter.on_success(),
            _ => {}
        }
        if resp.status() == StatusCode::CREATED || resp.status().is_success() {
            if let Some(d) = header_digest(&resp) {
                if &d != digest {
                    return Err(RegistryError::DigestMismatch {
                        digest: digest.to_string(),
                        actual: d.to_string(),
                    });
                }
            }
            Ok(())
        } else {
            Err(self
                .error_from(resp, "PUT blob", repository, Subject::Blob(digest))
                .await)
        }
    }

    /// Best-effort cancel of an abandoned upload session.
    pub async fn upload_cancel(&self, session: Url) {
        let _ = self
            .execute_once(Method::DELETE, session, HeaderMap::new(), None)
            .await;
    }

    /// The OCI 1.1 referrers of a manifest, as an index document, when the
    /// registry implements the referrers API (`None` otherwise).
    pub async fn referrers(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Bytes>, RegistryError> {
        let url = self
            .inner
            .endpoint
            .v2(&format!("{repository}/referrers/{digest}"));
        let request = format!(
            "GET {}/{repository}/referrers/{digest}",
            self.inner.endpoint.authority()
        );
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(crate::manifest::OCI_INDEX));
        let resp = self.execute(Method::GET, url, headers, None).await?;
        let is_index = header_str(&resp, CONTENT_TYPE.as_str())
            .is_some_and(|c| c.starts_with(crate::manifest::OCI_INDEX));
        match resp.status() {
            s if s.is_success() && is_index => Ok(Some(
                self.read_limited(resp, MAX_MANIFEST_BYTES, &request)
                    .await?,
            )),
            // 404/405/400: no referrers API; the caller falls back to the tag schema.
            _ => Ok(None),
        }
    }

    // ---- plumbing ----

    /// The `Authorization` value for `url`: only for URLs on this registry.
    /// Asked of the credential source every time: it caches, and knows when
    /// its token is due (ECR's last 12 hours, or less after an assumed role).
    async fn auth_for(
        &self,
        url: &Url,
        refresh: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        if !self.inner.endpoint.owns(url) {
            return Ok(None);
        }
        match self.inner.credentials.credentials(refresh).await? {
            Some(c) => {
                let mut v = HeaderValue::from_str(&c.header_value()).map_err(|_| {
                    RegistryError::Credentials {
                        message: "credentials contain characters not allowed in a header".into(),
                        retryable: false,
                    }
                })?;
                v.set_sensitive(true);
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// Time left before this handle's deadline (`None`: no deadline).
    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// `wanted`, or less when the deadline comes first (then `true`).
    fn cut_to_deadline(&self, wanted: Duration) -> (Duration, bool) {
        match self.time_left() {
            Some(left) if left < wanted => (left, true),
            _ => (wanted, false),
        }
    }

    /// Fails when the deadline has passed.
    fn check_deadline(&self, request: &str) -> Result<(), RegistryError> {
        match self.time_left() {
            Some(left) if left.is_zero() => Err(RegistryError::DeadlineReached {
                request: request.to_string(),
                left,
            }),
            _ => Ok(()),
        }
    }

    /// Waits for the rate limiter's slot, unless that would pass the deadline.
    async fn wait_for_turn(&self, limiter: &Limiter, request: &str) -> Result<(), RegistryError> {
        loop {
            self.check_deadline(request)?;
            let wait = limiter.reserve();
            if wait.is_zero() {
                return Ok(());
            }
            if self.time_left().is_some_and(|left| left <= wait) {
                return Err(RegistryError::DeadlineReached {
                    request: request.to_string(),
                    left: self.time_left().unwrap_or_default(),
                });
            }
            tracing::trace!(request, wait_ms = wait.as_millis() as u64, "rate limited");
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends with retries on transient failures, throttling waited out, and
    /// one credential refresh on 401 or on ECR's expired-token 403.
    /// Returns any response that is not transient; the caller interprets
    /// it, except a 403, which becomes [`RegistryError::Denied`] or
    /// [`RegistryError::TokenExpired`] here.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retry = self.retry_state();
        let mut refreshed = false;
        let mut attempt = 1u32;
        let limiter = throttle::limiter(&host_port(&url), ApiClass::of(&method, url.path()));
        let own = self.inner.endpoint.owns(&url);
        loop {
            self.wait_for_turn(&limiter, &request_label(&method, &url))
                .await?;
            let auth = self.auth_for(&url, false).await?;
            let outcome = self
                .send(
                    &method,
                    &url,
                    &headers,
                    body.clone(),
                    auth.as_ref(),
                    attempt,
                )
                .await;
            let err = match outcome {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !refreshed && own => {
                    // Expired token: fetch fresh credentials once, outside the retry budget.
                    refreshed = true;
                    self.auth_for(&url, true).await?;
                    attempt += 1;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::FORBIDDEN && own => {
                    let refusal = self.forbidden(&method, resp, auth.as_ref()).await;
                    if matches!(refusal, RegistryError::TokenExpired { .. })
                        && !refreshed
                        && self.inner.credentials.can_refresh()
                    {
                        tracing::info!(host = %host_port(&url), "registry token expired; fetching a new one");
                        refreshed = true;
                        self.auth_for(&url, true).await?;
                        attempt += 1;
                        continue;
                    }
                    return Err(refusal);
                }
                Ok(resp) if is_transient(resp.status()) => {
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                        limiter.on_throttle();
                    }
                    self.error_from(resp, method.as_str(), &repo_of(&url), Subject::Upload)
                        .await
                }
                Ok(resp) => {
                    limiter.on_success();
                    return Ok(resp);
                }
                Err(e) => e,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            match retry.next_delay_for(err.is_throttle(), err.retry_after()) {
                Some(delay) => {
                    tracing::debug!(
                        method = %method, host = url.host_str().unwrap_or(""), path = url.path(),
                        attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying request"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(err),
            }
        }
    }

    /// What a 403 from our own registry means. ECR says "Your authorization
    /// token has expired" in the body; a HEAD has no body, so a bare 403 is
    /// explained by asking `GET /v2/` once with the same credentials: 403
    /// there too means the token, 200 means this resource is not allowed.
    async fn forbidden(
        &self,
        method: &Method,
        resp: reqwest::Response,
        auth: Option<&HeaderValue>,
    ) -> RegistryError {
        let url = resp.url().clone();
        let request = format!("{method} {}{}", host_port(&url), url.path());
        let body = self
            .read_limited(resp, MAX_ERROR_BODY, &request)
            .await
            .unwrap_or_default();
        let mut message = error_message(&body);
        if body.is_empty() {
            let probe = self.inner.endpoint.v2("");
            if let Ok(r) = self
                .send(&Method::GET, &probe, &HeaderMap::new(), None, auth, 1)
                .await
            {
                let status = r.status();
                let probed = self
                    .read_limited(r, MAX_ERROR_BODY, &request)
                    .await
                    .unwrap_or_default();
                if status == StatusCode::FORBIDDEN {
                    message = error_message(&probed);
                } else if status.is_success() {
                    message = "the credentials are valid for the registry but not for this request (check the repository policy and the caller's ecr: permissions)".into();
                }
            }
        }
        if says_token_expired(&message) {
            RegistryError::TokenExpired { request, message }
        } else {
            RegistryError::Denied { request, message }
        }
    }

    /// One attempt, no retry (cleanup calls).
    async fn execute_once(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, RegistryError> {
        let auth = self.auth_for(&url, false).await?;
        self.send(&method, &url, &headers, body, auth.as_ref(), 1)
            .await
    }

    async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
        auth: Option<&HeaderValue>,
        attempt: u32,
    ) -> Result<reqwest::Response, RegistryError> {
        let body_len = body.as_ref().map_or(0, |b| b.len() as u64);
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(b) = body {
            req = req.body(b);
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let started = Instant::now();
        let request = || request_label(method, url);
        self.check_deadline(&request())?;
        let (waited, by_deadline) = self.cut_to_deadline(self.inner.timeouts.response);
        match tokio::time::timeout(waited, req.send()).await {
            Err(_) if by_deadline => {
                trace_request(method, url, None, body_len, started, attempt);
                Err(RegistryError::DeadlineReached {
                    request: request(),
                    left: self.time_left().unwrap_or_default(),
                })
            }
            Err(_) => {
                trace_request(method, url, None, body_len, started, attempt);
                Err(RegistryError::Timeout {
                    request: request(),
                    waited,
                    phase: "waiting for the response",
                })
            }
            Ok(Err(e)) => {
                trace_request(method, url, None, body_len, started, attempt);
                Err(RegistryError::transport(request(), e))
            }
            Ok(Ok(resp)) => {
                let bytes = resp.content_length().unwrap_or(0).max(body_len);
                trace_request(method, url, Some(resp.status()), bytes, started, attempt);
                Ok(resp)
            }
        }
    }

    async fn read_limited(
        &self,
        resp: reqwest::Response,
        limit: usize,
        request: &str,
    ) -> Result<Bytes, RegistryError> {
        use futures_util::StreamExt;
        let mut stream =
            IdleTimeoutStream::new(resp, self.inner.timeouts.idle_read, request.to_string());
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limit {
                return Err(RegistryError::Protocol {
                    request: request.to_string(),
                    reason: format!("body larger than {limit} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }

    async fn error_from(
        &self,
        resp: reqwest::Response,
        op: &str,
        repository: &str,
        subject: Subject<'_>,
    ) -> RegistryError {
        let status = resp.status();
        let url = resp.url().clone();
        let request = format!("{op} {}{}", host_port(&url), url.path());
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = self
            .read_limited(resp, MAX_ERROR_BODY, &request)
            .await
            .unwrap_or_default();
        let parsed = ErrorBody::parse(&body);
        let message = error_message(&body);
        let registry = self.inner.endpoint.authority();
        match status.as_u16() {
            401 => RegistryError::Unauthorized { request, message },
            403 if says_token_expired(&message) => RegistryError::TokenExpired { request, message },
            403 => RegistryError::Denied { request, message },
            404 if parsed.has_code("NAME_UNKNOWN") => RegistryError::RepositoryNotFound {
                registry,
                repository: repository.to_string(),
            },
            404 => match subject {
                Subject::Manifest(reference) => RegistryError::ManifestNotFound {
                    registry,
                    repository: repository.to_string(),
                    reference: reference.to_string(),
                },
                Subject::Blob(digest) => RegistryError::BlobNotFound {
                    registry,
                    repository: repository.to_string(),
                    digest: digest.to_string(),
                },
                Subject::Upload => RegistryError::Rejected {
                    request,
                    status: 404,
                    code: String::new(),
                    message,
                },
            },
            429 => RegistryError::Throttled {
                request,
                status: 429,
                message,
                retry_after,
            },
            s if s >= 500 => RegistryError::Server {
                request,
                status: s,
                message,
                retry_after,
            },
            s => RegistryError::Rejected {
                request,
                status: s,
                code: parsed
                    .errors
                    .first()
                    .map(|e| e.code.clone())
                    .unwrap_or_default(),
                message,
            },
        }
    }
}

/// ECR: `DENIED: Your authorization token has expired. Reauthenticate and try again.`
fn says_token_expired(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("token has expired") || m.contains("token expired")
}

/// `METHOD host[:port]/path`: what a request is called in errors and logs.
fn request_label(method: &Method, url: &Url) -> String {
    format!("{method} {}{}", host_port(url), url.path())
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
    h
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn header_digest(resp: &reqwest::Response) -> Option<Digest> {
    header_str(resp, DOCKER_CONTENT_DIGEST).and_then(|d| d.parse().ok())
}

fn host_port(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    }
}

/// `/v2/<repo>/manifests/...` -> `<repo>`, for error messages.
fn repo_of(url: &Url) -> String {
    let path = url.path().trim_start_matches("/v2/");
    for marker in ["/manifests/", "/blobs/", "/referrers/", "/tags/"] {
        if let Some(i) = path.find(marker) {
            return path[..i].to_string();
        }
    }
    path.to_string()
}

/// One trace line per HTTP exchange. Host and path only: query strings
/// (upload state, presigned S3 signatures) and headers are never logged.
fn trace_request(
    method: &Method,
    url: &Url,
    status: Option<StatusCode>,
    bytes: u64,
    started: Instant,
    attempt: u32,
) {
    tracing::debug!(
        target: "ecr_bridge::http",
        method = %method,
        host = %host_port(url),
        path = url.path(),
        status = status.map(|s| s.as_u16()).unwrap_or(0),
        bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        attempt,
        "registry request"
    );
}

/// A response body that fails when no data arrives for `idle`.
struct IdleTimeoutStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    request: String,
    done: bool,
}

impl IdleTimeoutStream {
    fn new(resp: reqwest::Response, idle: Duration, request: String) -> Self {
        IdleTimeoutStream {
            inner: Box::pin(resp.bytes_stream()),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            request,
            done: false,
        }
    }
}

impl Stream for IdleTimeoutStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                let request = self.request.clone();
                Poll::Ready(Some(Err(RegistryError::transport(request, e))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(RegistryError::Timeout {
                        request: self.request.clone(),
                        waited: self.idle,
                        phase: "with no data while reading the body",
                    })))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;
