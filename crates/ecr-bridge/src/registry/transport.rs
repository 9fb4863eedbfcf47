//! The one path every registry request takes: credentials (asked of their
//! source for every request, sent only to URLs on the registry itself,
//! refreshed once on 401 or on ECR's expired-token 403), the rate limiter
//! of its host and API, the deadline, timeouts, redirects, a trace line per
//! exchange and the mapping of answers to [`RegistryError`]s.
//!
//! It is also the one retry layer: [`Transport::execute`] retries transient
//! failures within the [`RetryPolicy`], throttling waited out apart. Only a
//! request whose body is a stream is sent once ([`Transport::send_once`]);
//! whoever made the stream decides whether to start over (the blob copier
//! does, from the source).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::CredentialSource;
use super::endpoint::Endpoint;
use super::error::{error_message, host_port, request_label, RegistryError};
use super::redirect::{redirect_target, MAX_REDIRECTS};
use super::response::{read_limited, IdleTimeoutStream, MAX_ERROR_BODY};
use super::retry::{RetryPolicy, RetryState};
use super::status::{self, is_transient, says_token_expired, Subject};
use super::throttle::{self, ApiClass, Limiter};
use super::timeouts::Timeouts;

/// A request the transport may send again: its body is bytes.
pub(super) struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl Request {
    pub(super) fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub(super) fn header(mut self, name: HeaderName, value: HeaderValue) -> Request {
        self.headers.insert(name, value);
        self
    }

    pub(super) fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }
}

/// A request sent once and never again (see [`Transport::send_once`]).
pub(super) struct Once {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<reqwest::Body>,
    /// The body's size, for the trace.
    pub(super) body_len: u64,
    /// How errors name the request.
    pub(super) label: String,
    /// How long its answer may take, and what that wait is called.
    pub(super) wait: Duration,
    pub(super) phase: &'static str,
    pub(super) api: ApiClass,
}

/// One attempt on the wire.
struct Outgoing<'a> {
    method: &'a Method,
    url: &'a Url,
    headers: &'a HeaderMap,
    body: Option<reqwest::Body>,
    body_len: u64,
    label: &'a str,
    wait: Duration,
    phase: &'static str,
}

const WAITING_FOR_RESPONSE: &str = "waiting for the response";

/// What every handle of one registry shares; [`super::RegistryClient::new`]
/// puts it together.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) http: reqwest::Client,
    pub(super) endpoint: Endpoint,
    pub(super) credentials: Arc<dyn CredentialSource>,
    pub(super) retry: RetryPolicy,
    pub(super) timeouts: Timeouts,
}

/// One registry's connection pool, credentials and policies, with the
/// deadline of this handle. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Transport {
    shared: Arc<Shared>,
    /// When every request of this handle must be over: no wait, timeout or
    /// retry runs past it.
    deadline: Option<Instant>,
}

impl Transport {
    pub(super) fn new(shared: Shared) -> Self {
        Transport {
            shared: Arc::new(shared),
            deadline: None,
        }
    }

    pub(super) fn with_deadline(&self, deadline: Option<Instant>) -> Transport {
        Transport {
            shared: self.shared.clone(),
            deadline,
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    pub(super) fn retry_policy(&self) -> &RetryPolicy {
        &self.shared.retry
    }

    pub(super) fn timeouts(&self) -> &Timeouts {
        &self.shared.timeouts
    }

    pub(super) fn retry_state(&self) -> RetryState<'_> {
        self.shared.retry.start_until(self.deadline)
    }

    /// [`Transport::execute_with`], taking whatever answer it ends with.
    pub(super) async fn execute(&self, req: &Request) -> Result<reqwest::Response, RegistryError> {
        self.execute_with(req, |resp| async { Ok(resp) }).await
    }

    /// Sends `req` and hands the answer to `accept`, retrying transient
    /// failures (connection, timeout, 408, 5xx, 429 waited out apart; a
    /// retryable error from `accept`, such as a body cut short, as well)
    /// within the budget, with one credential refresh on 401 or on ECR's
    /// expired-token 403. Any other answer goes to `accept`, except a 403
    /// from the registry, which becomes [`RegistryError::Denied`] or
    /// [`RegistryError::TokenExpired`] here.
    pub(super) async fn execute_with<T, F, Fut>(
        &self,
        req: &Request,
        mut accept: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let Request {
            method,
            url,
            headers,
            body,
        } = req;
        let label = request_label(method, url);
        let mut retry = self.retry_state();
        let mut refreshed = false;
        let mut attempt = 1u32;
        let limiter = throttle::limiter(&host_port(url), ApiClass::of(method, url.path()));
        let own = self.shared.endpoint.owns(url);
        loop {
            self.wait_for_turn(&limiter, &label).await?;
            let outgoing = Outgoing {
                method,
                url,
                headers,
                body: body.clone().map(reqwest::Body::from),
                body_len: body.as_ref().map_or(0, |b| b.len() as u64),
                label: &label,
                wait: self.shared.timeouts.response,
                phase: WAITING_FOR_RESPONSE,
            };
            let outcome = match self.auth_for(url, false).await {
                Ok(auth) => self
                    .send(outgoing, auth.as_ref(), attempt)
                    .await
                    .map(|resp| (resp, auth)),
                Err(e) => Err(e),
            };
            let err = match outcome {
                Ok((resp, _)) if resp.status() == StatusCode::UNAUTHORIZED && !refreshed && own => {
                    // Expired token: fetch fresh credentials once, outside the retry budget.
                    refreshed = true;
                    self.auth_for(url, true).await?;
                    attempt += 1;
                    continue;
                }
                Ok((resp, auth)) if resp.status() == StatusCode::FORBIDDEN && own => {
                    let refusal = self.forbidden(method, resp, auth.as_ref()).await;
                    if matches!(refusal, RegistryError::TokenExpired { .. })
                        && !refreshed
                        && self.shared.credentials.can_refresh()
                    {
                        tracing::info!(host = %host_port(url), "registry token expired; fetching a new one");
                        refreshed = true;
                        self.auth_for(url, true).await?;
                        attempt += 1;
                        continue;
                    }
                    return Err(refusal);
                }
                Ok((resp, _)) if is_transient(resp.status()) => {
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                        limiter.on_throttle();
                    }
                    self.error_from(resp, method.as_str(), &repo_of(url), Subject::Upload)
                        .await
                }
                Ok((resp, _)) => {
                    limiter.on_success();
                    match accept(resp).await {
                        Ok(done) => return Ok(done),
                        Err(e) => e,
                    }
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

    /// [`Transport::execute`] through up to [`MAX_REDIRECTS`] redirects
    /// (ECR sends blob GETs to presigned S3 URLs), each hop a request of its
    /// own under the endpoint's rule, `Authorization` only where the
    /// registry owns the URL. Returns the last answer.
    pub(super) async fn execute_following(
        &self,
        mut req: Request,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut hops = 0;
        loop {
            let resp = self.execute(&req).await?;
            if resp.status().is_redirection() && hops < MAX_REDIRECTS {
                if let Some(next) = redirect_target(self.endpoint(), req.method.as_str(), &resp)? {
                    req.url = next;
                    hops += 1;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// One attempt, never repeated, for a body that cannot be replayed (a
    /// blob's stream) and for best-effort cleanup: the limiter, credentials,
    /// deadline, timeout and trace of every request, but no refresh and no
    /// retry. The caller reads every answer.
    pub(super) async fn send_once(&self, once: Once) -> Result<reqwest::Response, RegistryError> {
        let limiter = throttle::limiter(&host_port(&once.url), once.api);
        self.wait_for_turn(&limiter, &once.label).await?;
        let auth = self.auth_for(&once.url, false).await?;
        let outgoing = Outgoing {
            method: &once.method,
            url: &once.url,
            headers: &once.headers,
            body: once.body,
            body_len: once.body_len,
            label: &once.label,
            wait: once.wait,
            phase: once.phase,
        };
        let resp = self.send(outgoing, auth.as_ref(), 1).await?;
        match resp.status() {
            StatusCode::TOO_MANY_REQUESTS => limiter.on_throttle(),
            s if !s.is_server_error() => limiter.on_success(),
            _ => {}
        }
        Ok(resp)
    }

    /// A [`Once`] with the usual wait and label.
    pub(super) fn once(&self, method: Method, url: Url) -> Once {
        Once {
            api: ApiClass::of(&method, url.path()),
            label: request_label(&method, &url),
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            body_len: 0,
            wait: self.shared.timeouts.response,
            phase: WAITING_FOR_RESPONSE,
        }
    }

    /// The whole body, within `limit` bytes and the idle timeout.
    pub(super) async fn read_limited(
        &self,
        resp: reqwest::Response,
        limit: usize,
        request: &str,
    ) -> Result<Bytes, RegistryError> {
        read_limited(resp, limit, request, self.shared.timeouts.idle_read).await
    }

    /// The body as a stream that fails after the idle timeout.
    pub(super) fn body_stream(
        &self,
        resp: reqwest::Response,
        request: String,
    ) -> IdleTimeoutStream {
        IdleTimeoutStream::new(resp, self.shared.timeouts.idle_read, request)
    }

    /// The error an answer stands for ([`status::error_from`]).
    pub(super) async fn error_from(
        &self,
        resp: reqwest::Response,
        op: &str,
        repository: &str,
        subject: Subject<'_>,
    ) -> RegistryError {
        let registry = self.shared.endpoint.authority();
        status::error_from(
            resp,
            op,
            repository,
            subject,
            registry,
            self.shared.timeouts.idle_read,
        )
        .await
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
        let request = request_label(method, &url);
        let body = self
            .read_limited(resp, MAX_ERROR_BODY, &request)
            .await
            .unwrap_or_default();
        let mut message = error_message(&body);
        if body.is_empty() {
            let probe = self.shared.endpoint.v2("");
            let label = request_label(&Method::GET, &probe);
            let outgoing = Outgoing {
                method: &Method::GET,
                url: &probe,
                headers: &HeaderMap::new(),
                body: None,
                body_len: 0,
                label: &label,
                wait: self.shared.timeouts.response,
                phase: WAITING_FOR_RESPONSE,
            };
            if let Ok(r) = self.send(outgoing, auth, 1).await {
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

    /// One attempt on the wire: the deadline checked, the wait cut to it,
    /// one trace line whatever happens.
    async fn send(
        &self,
        out: Outgoing<'_>,
        auth: Option<&HeaderValue>,
        attempt: u32,
    ) -> Result<reqwest::Response, RegistryError> {
        let Outgoing {
            method,
            url,
            body_len,
            label,
            ..
        } = out;
        let mut req = self
            .shared
            .http
            .request(method.clone(), url.clone())
            .headers(out.headers.clone());
        if let Some(b) = out.body {
            req = req.body(b);
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let started = Instant::now();
        self.check_deadline(label)?;
        let (waited, by_deadline) = self.cut_to_deadline(out.wait);
        let result = tokio::time::timeout(waited, req.send()).await;
        let (status, bytes) = match &result {
            Ok(Ok(resp)) => (
                Some(resp.status()),
                resp.content_length().unwrap_or(0).max(body_len),
            ),
            _ => (None, body_len),
        };
        trace_request(method, url, status, bytes, started, attempt);
        match result {
            Err(_) if by_deadline => Err(RegistryError::DeadlineReached {
                request: label.to_string(),
                left: self.time_left().unwrap_or_default(),
            }),
            Err(_) => Err(RegistryError::Timeout {
                request: label.to_string(),
                waited,
                phase: out.phase,
            }),
            Ok(Err(e)) => Err(RegistryError::transport(label.to_string(), e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The `Authorization` value for `url`: only for URLs on this registry.
    /// Asked of the credential source every time: it caches, and knows when
    /// its token is due (ECR's last 12 hours, or less after an assumed role).
    async fn auth_for(
        &self,
        url: &Url,
        refresh: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        if !self.shared.endpoint.owns(url) {
            return Ok(None);
        }
        match self.shared.credentials.credentials(refresh).await? {
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
