//! A small client for the OCI distribution API, the one ECR serves at
//! `<account>.dkr.ecr.<region>.amazonaws.com`.
//!
//! It owns what every call needs and nothing else: credentials (sent only to
//! URLs on its own registry, refreshed once on 401), bounded retries with
//! backoff, timeouts, redirect handling that drops `Authorization` when the
//! host changes (ECR sends blob GETs to S3), and a trace line per request
//! that never shows credentials or query strings (presigned URLs carry
//! signatures there). The copy logic lives above it, in [`crate::copy`].

mod auth;
mod endpoint;
mod error;
mod retry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
};
use reqwest::{Method, StatusCode};
use tokio::sync::RwLock;
use url::Url;

pub use auth::{BasicCredentials, CredentialSource, StaticCredentials};
pub use endpoint::{host_is_loopback, Endpoint};
pub use error::{ErrorBody, RegistryError};
pub use retry::{parse_retry_after, RetryPolicy, RetryState};

use crate::digest::Digest;
use crate::manifest::{ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
const MAX_REDIRECTS: usize = 5;
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
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: Arc<dyn CredentialSource>,
    /// The `Authorization` value in use; replaced after a 401.
    auth_header: RwLock<Option<Option<HeaderValue>>>,
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
                auth_header: RwLock::new(None),
                retry,
                timeouts,
            }),
        }
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
        let mut retry = self.inner.retry.start();
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
            let Some(next) = self.redirect_target(&resp)? else {
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
                if let Some(next) = self.redirect_target(&resp)? {
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
        let resp = self
            .execute(
                Method::POST,
                url.clone(),
                HeaderMap::new(),
                Some(Bytes::new()),
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let location = header_str(&resp, LOCATION.as_str()).ok_or_else(|| {
                    RegistryError::Protocol {
                        request: format!(
                            "POST {}/{repository}/blobs/uploads/",
                            self.inner.endpoint.authority()
                        ),
                        reason: "202 without Location".into(),
                    }
                })?;
                let session = url.join(&location).map_err(|e| RegistryError::Protocol {
                    request: format!(
                        "POST {}/{repository}/blobs/uploads/",
                        self.inner.endpoint.authority()
                    ),
                    reason: format!("bad upload Location: {e}"),
                })?;
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
        let started = Instant::now();
        let deadline = self.inner.timeouts.upload_deadline(size);
        let result = tokio::time::timeout(deadline, req.send()).await;
        let resp = match result {
            Err(_) => {
                return Err(RegistryError::Timeout {
                    request,
                    waited: deadline,
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
    async fn auth_for(
        &self,
        url: &Url,
        refresh: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        if !self.inner.endpoint.owns(url) {
            return Ok(None);
        }
        if !refresh {
            if let Some(cached) = self.inner.auth_header.read().await.as_ref() {
                return Ok(cached.clone());
            }
        }
        let mut slot = self.inner.auth_header.write().await;
        if !refresh {
            if let Some(cached) = slot.as_ref() {
                return Ok(cached.clone());
            }
        }
        let creds = self.inner.credentials.credentials(refresh).await?;
        let value = match creds {
            Some(c) => {
                let mut v = HeaderValue::from_str(&c.header_value()).map_err(|_| {
                    RegistryError::Credentials {
                        message: "credentials contain characters not allowed in a header".into(),
                        retryable: false,
                    }
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        *slot = Some(value.clone());
        Ok(value)
    }

    /// Sends with retries on transient failures and one credential refresh on 401.
    /// Returns any response that is not transient; the caller interprets it.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retry = self.inner.retry.start();
        let mut refreshed = false;
        let mut attempt = 1u32;
        loop {
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
                Ok(resp)
                    if resp.status() == StatusCode::UNAUTHORIZED
                        && !refreshed
                        && self.inner.endpoint.owns(&url) =>
                {
                    // Expired token: fetch fresh credentials once, outside the retry budget.
                    refreshed = true;
                    self.auth_for(&url, true).await?;
                    attempt += 1;
                    continue;
                }
                Ok(resp) if is_transient(resp.status()) => {
                    self.error_from(resp, method.as_str(), &repo_of(&url), Subject::Upload)
                        .await
                }
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            match retry.next_delay(err.retry_after()) {
                Some(delay) if err.is_retryable() => {
                    tracing::debug!(
                        method = %method, host = url.host_str().unwrap_or(""), path = url.path(),
                        attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying request"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                _ => return Err(err),
            }
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
        let request = || format!("{method} {}{}", host_port(url), url.path());
        match tokio::time::timeout(self.inner.timeouts.response, req.send()).await {
            Err(_) => {
                trace_request(method, url, None, body_len, started, attempt);
                Err(RegistryError::Timeout {
                    request: request(),
                    waited: self.inner.timeouts.response,
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

    fn redirect_target(&self, resp: &reqwest::Response) -> Result<Option<Url>, RegistryError> {
        let Some(location) = header_str(resp, LOCATION.as_str()) else {
            return Ok(None);
        };
        let from = resp.url();
        let next = from.join(&location).map_err(|e| RegistryError::Protocol {
            request: format!("GET {}{}", host_port(from), from.path()),
            reason: format!("bad redirect Location: {e}"),
        })?;
        // Never downgrade to plain HTTP off this machine, whatever the registry says.
        if next.scheme() != "https"
            && !(next.scheme() == "http" && host_is_loopback(next.host_str().unwrap_or("")))
        {
            return Err(RegistryError::Protocol {
                request: format!("GET {}{}", host_port(from), from.path()),
                reason: format!(
                    "refusing redirect to insecure {}://{}",
                    next.scheme(),
                    host_port(&next)
                ),
            });
        }
        Ok(Some(next))
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
        let message = if parsed.errors.is_empty() {
            String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_string()
        } else {
            parsed.summary()
        };
        let registry = self.inner.endpoint.authority();
        match status.as_u16() {
            401 => RegistryError::Unauthorized { request, message },
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

/// A scripted HTTP/1.1 server for unit tests: one request per connection,
/// answered with whatever raw bytes the handler returns for (method, target).
#[cfg(test)]
pub(crate) mod test_server {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    pub struct TestServer {
        pub url: String,
        /// "METHOD target" of every request, in arrival order.
        pub seen: Arc<Mutex<Vec<String>>>,
    }

    impl TestServer {
        pub fn count(&self, prefix: &str) -> usize {
            let seen = self.seen.lock().unwrap();
            seen.iter().filter(|r| r.starts_with(prefix)).count()
        }
    }

    pub async fn start(
        handler: impl Fn(&str, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, handler) = (seen.clone(), Arc::new(handler));
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (log, handler) = (log.clone(), handler.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::new(sock);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let target = parts.next().unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    log.lock().unwrap().push(format!("{method} {target}"));
                    let answer = handler(&method, &target);
                    let mut sock = r.into_inner();
                    let _ = sock.write_all(&answer).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestServer { url, seen }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quick_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_total_wait: Duration::from_secs(1),
        }
    }

    fn client(url: &str) -> RegistryClient {
        let timeouts = Timeouts::default();
        RegistryClient::new(
            http_client(&timeouts).unwrap(),
            Endpoint::parse(url, true).unwrap(),
            Arc::new(StaticCredentials(None)),
            quick_retry(),
            timeouts,
        )
    }

    #[tokio::test]
    async fn given_a_manifest_body_cut_short_when_fetched_then_it_is_fetched_again() {
        let manifest =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        let calls = AtomicUsize::new(0);
        let server = test_server::start(move |_, _| {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                manifest.len()
            );
            // The first answer stops after 10 bytes of the promised body.
            let body = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                &manifest[..10]
            } else {
                &manifest[..]
            };
            [head.as_bytes(), body].concat()
        })
        .await;

        let got = client(&server.url).manifest_get("app", "v1").await.unwrap();

        assert_eq!(&got.bytes[..], &manifest[..]);
        assert_eq!(server.count("GET /v2/app/manifests/v1"), 2);
    }

    #[tokio::test]
    async fn given_manifest_bodies_that_always_break_when_fetched_then_a_retryable_error_after_the_budget(
    ) {
        let server = test_server::start(|_, _| {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{".to_vec()
        })
        .await;

        let err = client(&server.url)
            .manifest_get("app", "v1")
            .await
            .unwrap_err();

        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(server.count("GET "), quick_retry().max_attempts as usize);
    }
}
