//! Typed registry errors, each knowing whether a retry can help.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::connect_errors::{connect_cause, ConnectCause};
use super::tls_errors::{answered_plain_http, certificate_problem};

/// `host[:port]` of a URL: how errors and logs name where a request went.
pub(crate) fn host_port(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    }
}

/// `METHOD host[:port]/path`: what a request is called in errors and logs
/// (never the query: upload state and presigned signatures live there).
pub(crate) fn request_label(method: &Method, url: &Url) -> String {
    format!("{method} {}{}", host_port(url), url.path())
}

/// The `errors` array of the distribution spec's error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    pub fn parse(bytes: &[u8]) -> ErrorBody {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// `CODE: message; CODE: message`, or the first bytes of a non-JSON body.
    pub fn summary(&self) -> String {
        self.errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The registry's own words: `CODE: message` from the spec's error body,
/// `Code: Message` from an S3 one (a presigned blob URL's host), or the
/// start of whatever else it sent.
pub(crate) fn error_message(body: &[u8]) -> String {
    let parsed = ErrorBody::parse(body);
    if !parsed.errors.is_empty() {
        return parsed.summary();
    }
    let text = String::from_utf8_lossy(body);
    if let Some(s3) = s3_error(&text) {
        return s3;
    }
    crate::text::clip(text.trim(), 300)
}

/// S3's XML error, `Code` and `Message` only: the rest may echo the
/// presigned request (`CanonicalRequest`, `StringToSign`, `X-Amz-*`).
fn s3_error(text: &str) -> Option<String> {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(crate::text::clip(&text[start..start + len], 200))
    };
    if !text.contains("<Error>") {
        return None;
    }
    let code = element("Code")?;
    Some(match element("Message") {
        Some(message) => format!("{code}: {message}"),
        None => code,
    })
}

/// The codes of a manifest refused for a blob the registry lacks (the
/// message holds every entry's code, the first may be another).
const BLOB_UNKNOWN_CODES: [&str; 3] = [
    "MANIFEST_BLOB_UNKNOWN",
    "BLOB_UPLOAD_UNKNOWN",
    "BLOB_UNKNOWN",
];

pub(crate) fn names_blob_unknown(code: &str) -> bool {
    BLOB_UNKNOWN_CODES.contains(&code)
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("{request}: authentication failed (HTTP 401); check the registry credentials{}", detail(.message))]
    Unauthorized { request: String, message: String },

    #[error("{request}: access denied (HTTP 403){}", detail(.message))]
    Denied { request: String, message: String },

    /// ECR answers an expired token with 403 (not 401) and says so in the body.
    #[error("{request}: the registry's authorization token has expired (HTTP 403){}; get a new one (for ECR: aws ecr get-login-password --region <region>)", detail(.message))]
    TokenExpired { request: String, message: String },

    /// Stopped to leave the invocation time to report; the next attempt
    /// (a Lambda retry, a requeued work item) carries on where this stopped.
    #[error("{request}: stopped {left:?} before the deadline to leave time to report; the work continues on retry")]
    DeadlineReached { request: String, left: Duration },

    #[error("repository {repository:?} does not exist on {registry} (NAME_UNKNOWN)")]
    RepositoryNotFound {
        registry: String,
        repository: String,
    },

    #[error("manifest {reference} not found in {registry}/{repository}")]
    ManifestNotFound {
        registry: String,
        repository: String,
        reference: String,
    },

    #[error("blob {digest} not found in {registry}/{repository}")]
    BlobNotFound {
        registry: String,
        repository: String,
        digest: String,
    },

    #[error("{request}: throttled (HTTP {status}){}", detail(.message))]
    Throttled {
        request: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },

    #[error("{request}: server error HTTP {status}{}", detail(.message))]
    Server {
        request: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },

    #[error("{request}: refused with HTTP {status}{}", detail(.message))]
    Rejected {
        request: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error("{request}: {kind}: {source}")]
    Transport {
        request: String,
        /// What went wrong, with the host where it says more.
        kind: String,
        #[source]
        source: reqwest::Error,
    },

    /// The registry's host name does not exist in DNS: a wrong address,
    /// not a network to wait out.
    #[error("{request}: host {host} not found (DNS): check the registry address")]
    UnknownHost {
        request: String,
        host: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server's TLS certificate was refused (an authority not in the
    /// root store, another name, expired): no retry changes that.
    #[error("{request}: TLS certificate of {host} {problem}: {reason}")]
    Certificate {
        request: String,
        /// `host[:port]` that presented it (the redirect target for a blob
        /// sent to another host).
        host: String,
        /// "not trusted", "not valid for this name", "expired", "not valid yet".
        problem: &'static str,
        /// rustls's words, with a hint for an unknown authority.
        reason: String,
        #[source]
        source: reqwest::Error,
    },

    /// An HTTPS request answered in plain HTTP: the server does not speak
    /// TLS on that port. Known at the first answer; no retry changes it.
    #[error("{request}: {host} answered in plain HTTP, not TLS: it is an HTTP registry (for a loopback registry, allow plain HTTP with --plain-http-loopback, or REGISTRY_ENDPOINTS=<host>=http://127.0.0.1:<port>); elsewhere it must serve HTTPS")]
    PlainHttp {
        request: String,
        host: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{request}: timed out after {waited:?} {phase}")]
    Timeout {
        request: String,
        waited: Duration,
        phase: &'static str,
    },

    #[error("content of {digest} does not match its digest (got {actual}); the bytes were corrupted in transit or at the source")]
    DigestMismatch { digest: String, actual: String },

    #[error("content of {digest} has {actual} bytes where {expected} were expected")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("{request}: unexpected answer: {reason}")]
    Protocol { request: String, reason: String },

    /// The registry sent us (a redirect, an upload Location) where the
    /// endpoint's rule forbids going: following it could expose the
    /// content or credentials to anyone on the path.
    #[error("{request}: refusing to follow the {what} to {target}: {reason}")]
    UnsafeLocation {
        request: String,
        /// "redirect" or "upload Location".
        what: &'static str,
        /// `scheme://host[:port]` only: the rest may carry a signature.
        target: String,
        reason: &'static str,
    },

    #[error("registry credentials unavailable: {message}")]
    Credentials { message: String, retryable: bool },
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl RegistryError {
    /// Whether the same request could succeed later without anyone changing
    /// anything: network trouble, throttling, 5xx, a truncated or corrupted
    /// transfer. Never a 4xx that states a fact (unknown, denied, invalid).
    pub fn is_retryable(&self) -> bool {
        // Every variant by name, so that a new one must be classified.
        match self {
            // The registry's load, the network, a transfer gone wrong, the clock.
            Self::Throttled { .. } | Self::Server { .. } => true,
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::DigestMismatch { .. } | Self::SizeMismatch { .. } => true,
            Self::DeadlineReached { .. } => true,
            Self::Credentials { retryable, .. } => *retryable,
            Self::Rejected { status, .. } => *status == 408,
            // Refused credentials, missing content, a wrong setup or answer.
            Self::Unauthorized { .. } | Self::Denied { .. } | Self::TokenExpired { .. } => false,
            Self::RepositoryNotFound { .. } | Self::ManifestNotFound { .. } => false,
            Self::BlobNotFound { .. } => false,
            Self::InvalidEndpoint { .. } | Self::Certificate { .. } => false,
            Self::PlainHttp { .. } | Self::UnknownHost { .. } => false,
            Self::Protocol { .. } | Self::UnsafeLocation { .. } => false,
        }
    }

    /// A manifest refused because the registry lacks a blob it names:
    /// distribution's `MANIFEST_BLOB_UNKNOWN`, ECR's `BLOB_UPLOAD_UNKNOWN`
    /// "Layers with digests ... do not exist". Final for the request, but
    /// right after our own uploads it can be the registry not seeing them
    /// yet (concurrent pushes of one blob), so the copy checks the blobs
    /// and puts the manifest once more.
    pub fn is_blob_unknown_refusal(&self) -> bool {
        matches!(self, RegistryError::Rejected { status: 400 | 404, code, message, .. }
            if names_blob_unknown(code) || BLOB_UNKNOWN_CODES.iter().any(|c| message.contains(c)))
    }

    /// Throttling (429): a quota, waited out rather than counted as a failure.
    pub fn is_throttle(&self) -> bool {
        matches!(self, RegistryError::Throttled { .. })
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Throttled { retry_after, .. }
            | RegistryError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A request that got no HTTP answer. A refused certificate becomes
    /// [`RegistryError::Certificate`]. The URL reqwest keeps in its error
    /// loses its query: a presigned URL carries its signature there.
    pub(crate) fn transport(request: String, mut source: reqwest::Error) -> RegistryError {
        if let Some(url) = source.url_mut() {
            url.set_query(None);
            url.set_fragment(None);
        }
        if let Some((problem, reason)) = certificate_problem(&source) {
            let host = match source.url() {
                Some(url) => host_port(url),
                // "METHOD host[:port]/path"
                None => request
                    .split_whitespace()
                    .nth(1)
                    .and_then(|t| t.split('/').next())
                    .unwrap_or_default()
                    .to_string(),
            };
            return RegistryError::Certificate {
                request,
                host,
                problem,
                reason,
                source,
            };
        }
        if answered_plain_http(&source) {
            let host = source.url().map(host_port).unwrap_or_default();
            return RegistryError::PlainHttp {
                request,
                host,
                source,
            };
        }
        let host = source.url().map(host_port).unwrap_or_default();
        let kind = if source.is_timeout() {
            "timed out".to_string()
        } else if source.is_connect() {
            match connect_cause(&source) {
                ConnectCause::Refused => format!(
                    "connection refused by {host}: nothing listens there (check the address and port, or whether the registry is up)"
                ),
                ConnectCause::UnknownHost => {
                    return RegistryError::UnknownHost {
                        request,
                        host,
                        source,
                    }
                }
                ConnectCause::DnsFailed => {
                    format!("cannot resolve {host} (DNS failed for now)")
                }
                ConnectCause::Other => format!("cannot connect to {host}"),
            }
        } else if source.is_body() || source.is_decode() {
            "connection broke while transferring the body".to_string()
        } else {
            "request failed".to_string()
        };
        RegistryError::Transport {
            request,
            kind,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_error_body_when_parsed_then_codes_are_found_and_summarised() {
        let body = ErrorBody::parse(br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#);
        assert!(body.has_code("NAME_UNKNOWN"));
        assert_eq!(
            body.summary(),
            "NAME_UNKNOWN: repository name not known to registry"
        );
        assert!(ErrorBody::parse(b"<html>").errors.is_empty());
    }

    #[tokio::test]
    async fn given_a_transport_failure_on_a_presigned_url_when_classified_then_no_message_shows_its_query(
    ) {
        // Nothing listens on a port just freed: the request fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url =
            format!("http://127.0.0.1:{port}/blob?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKID");
        let e = reqwest::Client::new().get(&url).send().await.unwrap_err();

        let err = RegistryError::transport(format!("GET 127.0.0.1:{port}/blob"), e);

        assert!(err.is_retryable(), "{err}");
        let mut all = format!("{err} {err:?}");
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            all.push_str(&format!(" {c} {c:?}"));
            cause = c.source();
        }
        assert!(!all.contains("s3cr3t") && !all.contains("AKID"), "{all}");
        assert!(all.contains("/blob"), "{all}");
    }

    #[test]
    fn given_an_s3_error_echoing_the_presigned_request_when_summarised_then_code_and_message_only()
    {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><AWSAccessKeyId>ASIAEXAMPLE</AWSAccessKeyId><CanonicalRequest>GET
/layer
X-Amz-Algorithm=AWS4-HMAC-SHA256&amp;X-Amz-Security-Token=SECRET&amp;X-Amz-SignedHeaders=host</CanonicalRequest></Error>"#;

        let message = error_message(body);

        assert_eq!(
            message,
            "SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided."
        );
        assert_eq!(
            error_message(
                b"<Error><Code>AccessDenied</Code><X-Amz-Expires>600</X-Amz-Expires></Error>"
            ),
            "AccessDenied"
        );
        assert_eq!(error_message(b"plain words"), "plain words");
    }

    /// An answer with `status`, typed as the transport types it: 429
    /// throttled, 5xx a server error, anything else rejected.
    fn answered(status: u16) -> RegistryError {
        let (request, message) = ("GET x".to_string(), String::new());
        match status {
            429 => RegistryError::Throttled {
                request,
                status,
                message,
                retry_after: None,
            },
            500.. => RegistryError::Server {
                request,
                status,
                message,
                retry_after: None,
            },
            _ => RegistryError::Rejected {
                request,
                status,
                code: String::new(),
                message,
            },
        }
    }

    #[test]
    fn given_each_error_when_classified_then_only_transient_ones_retry() {
        let r = || "GET x".to_string();
        let cases = [
            (answered(503), true),
            (answered(429), true),
            (answered(408), true),
            (answered(400), false),
            (
                RegistryError::Unauthorized {
                    request: r(),
                    message: String::new(),
                },
                false,
            ),
            (
                RegistryError::ManifestNotFound {
                    registry: r(),
                    repository: r(),
                    reference: r(),
                },
                false,
            ),
        ];
        for (err, retryable) in cases {
            assert_eq!(err.is_retryable(), retryable, "{err:?}");
        }
    }

    #[test]
    fn given_manifest_refusals_when_classified_then_only_missing_blob_ones_are_rechecked() {
        let refused = |status, code: &str, message: &str| RegistryError::Rejected {
            request: "PUT manifest".into(),
            status,
            code: code.into(),
            message: message.into(),
        };
        // ECR's words (oras-project/oras-py#54).
        let ecr = refused(
            400,
            "BLOB_UPLOAD_UNKNOWN",
            "BLOB_UPLOAD_UNKNOWN: Layers with digests '[sha256:e3b0]' required for pushing image into repository with name 'coeus' in the registry with id '222222222222' do not exist",
        );
        // docker-registry 2.8 under two concurrent commits of one blob: the
        // missing blob's code is not the first entry.
        let distribution = refused(
            400,
            "DIGEST_INVALID",
            "DIGEST_INVALID: provided digest did not match uploaded content; MANIFEST_BLOB_UNKNOWN: blob unknown to registry",
        );

        assert!(ecr.is_blob_unknown_refusal());
        assert!(distribution.is_blob_unknown_refusal());
        assert!(
            refused(404, "BLOB_UNKNOWN", "BLOB_UNKNOWN: blob unknown").is_blob_unknown_refusal()
        );
        assert!(
            !refused(400, "MANIFEST_INVALID", "MANIFEST_INVALID: bad").is_blob_unknown_refusal()
        );
        assert!(!refused(400, "TAG_INVALID", "TAG_INVALID: immutable").is_blob_unknown_refusal());
        assert!(
            !ecr.is_retryable(),
            "a blind retry of the same PUT is no help"
        );
    }
}
