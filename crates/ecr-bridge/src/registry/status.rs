//! What an answer's status means: which answers are worth another attempt,
//! and the [`RegistryError`] of one that is final, in the registry's own
//! words from its error body.

use std::time::Duration;

use reqwest::StatusCode;

use super::error::{error_message, host_port, names_blob_unknown, ErrorBody, RegistryError};
use super::response::{read_limited, MAX_ERROR_BODY};
use super::retry::parse_retry_after;
use crate::digest::Digest;

/// What a 404 means for a request.
#[derive(Clone, Copy)]
pub(super) enum Subject<'a> {
    Manifest(&'a str),
    Blob(&'a Digest),
    Upload,
}

/// Answers that say "later", not "no".
pub(super) fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// ECR: `DENIED: Your authorization token has expired. Reauthenticate and try again.`
pub(super) fn says_token_expired(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("token has expired") || m.contains("token expired")
}

/// The error an answer of `registry` stands for; `op` names the request
/// (`HEAD manifest`, or just the method for a transient answer).
pub(super) async fn error_from(
    resp: reqwest::Response,
    op: &str,
    repository: &str,
    subject: Subject<'_>,
    registry: String,
    idle: Duration,
) -> RegistryError {
    let status = resp.status();
    let url = resp.url().clone();
    let request = format!("{op} {}{}", host_port(&url), url.path());
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = read_limited(resp, MAX_ERROR_BODY, &request, idle)
        .await
        .unwrap_or_default();
    let parsed = ErrorBody::parse(&body);
    let message = error_message(&body);
    match status.as_u16() {
        401 => RegistryError::Unauthorized { request, message },
        403 if says_token_expired(&message) => RegistryError::TokenExpired { request, message },
        403 => RegistryError::Denied { request, message },
        404 if parsed.has_code("NAME_UNKNOWN") => RegistryError::RepositoryNotFound {
            registry,
            repository: repository.to_string(),
        },
        // A manifest PUT refused for a blob the registry lacks: about the
        // blob, not "manifest unknown".
        404 if matches!(subject, Subject::Manifest(_))
            && parsed.errors.iter().any(|e| names_blob_unknown(&e.code)) =>
        {
            RegistryError::Rejected {
                request,
                status: 404,
                code: parsed.errors[0].code.clone(),
                message,
            }
        }
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
