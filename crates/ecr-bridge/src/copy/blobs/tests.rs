//! The blob copier against scripted registries: what restarts a blob, and
//! what does not.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::digest::Digest;
use crate::registry::test_server::{self, TestServer};
use crate::registry::{self, RegistryClient};

fn retry() -> registry::RetryPolicy {
    registry::RetryPolicy {
        max_attempts: 3,
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        max_total_wait: std::time::Duration::from_secs(1),
        ..registry::RetryPolicy::default()
    }
}

fn location(url: &str, repository: &str) -> Repository {
    let timeouts = registry::Timeouts::default();
    let client = RegistryClient::new(
        registry::http_client(&timeouts).unwrap(),
        registry::Endpoint::parse(url, true).unwrap(),
        Arc::new(registry::StaticCredentials(Some(
            registry::BasicCredentials::new("AWS", "token"),
        ))),
        retry(),
        timeouts,
    );
    Repository::new(client, repository)
}

fn answer(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// A registry holding `blob` in `src`, whose upload PUTs to `dst` are
/// refused with 401 `refusals` times.
async fn registry_refusing_puts(blob: &'static [u8], refusals: usize) -> TestServer {
    let puts = AtomicUsize::new(0);
    test_server::start(move |method, target| match (method, target) {
        ("HEAD", t) if t.starts_with("/v2/dst/blobs/") => answer("404 Not Found", "", b""),
        ("POST", "/v2/dst/blobs/uploads/") => answer(
            "202 Accepted",
            "Location: /v2/dst/blobs/uploads/s1\r\n",
            b"",
        ),
        ("GET", t) if t.starts_with("/v2/src/blobs/") => answer("200 OK", "", blob),
        ("PUT", t) if t.starts_with("/v2/dst/blobs/uploads/s1?") => {
            if puts.fetch_add(1, Ordering::SeqCst) < refusals {
                answer(
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"x\"\r\n",
                    b"",
                )
            } else {
                answer("201 Created", "", b"")
            }
        }
        _ => answer("404 Not Found", "", b""),
    })
    .await
}

fn descriptor(blob: &[u8]) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": "application/octet-stream",
        "digest": Digest::sha256_of(blob).to_string(),
        "size": blob.len(),
    }))
    .unwrap()
}

/// One blob from `src` to `dst` on the scripted server, no mount.
async fn copy_blob(url: &str, blob: &[u8], stats: &Stats) -> Result<(), CopyError> {
    let (src, dst) = (location(url, "src"), location(url, "dst"));
    let copier = BlobCopier {
        source: &src,
        target: &dst,
        mount: false,
        progress: None,
    };
    copier.copy(&descriptor(blob), stats).await
}

/// The error [`copy_blob`] ends with, for scripts where it must fail.
async fn failed_copy(url: &str, blob: &[u8]) -> CopyError {
    copy_blob(url, blob, &Stats::default()).await.unwrap_err()
}

#[tokio::test]
async fn given_credentials_expiring_during_a_blob_upload_when_copied_then_the_blob_is_sent_again() {
    let blob: &'static [u8] = b"layer bytes";
    let server = registry_refusing_puts(blob, 1).await;
    let stats = Stats::default();

    copy_blob(&server.url, blob, &stats).await.unwrap();

    assert_eq!(stats.blobs_uploaded.load(Ordering::Relaxed), 1);
    assert_eq!(server.count("PUT /v2/dst/blobs/uploads/s1"), 2);
}

#[tokio::test]
async fn given_uploads_always_refused_with_401_when_copied_then_a_retryable_credentials_error_within_the_budget(
) {
    let blob: &'static [u8] = b"layer bytes";
    let server = registry_refusing_puts(blob, usize::MAX).await;
    let err = failed_copy(&server.url, blob).await;

    assert!(
        matches!(
            err,
            CopyError::Registry(RegistryError::Credentials {
                retryable: true,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("401"), "{err}");
    // One PUT per attempt of the blob's budget, then it stops.
    assert_eq!(server.count("PUT /v2/dst/blobs/uploads/s1"), 3);
}

#[tokio::test]
async fn given_a_blob_head_that_keeps_failing_when_copied_then_it_is_tried_max_attempts_times_not_squared(
) {
    let blob: &'static [u8] = b"layer bytes";
    let server = test_server::start(|method, _| match method {
        "HEAD" => answer("503 Service Unavailable", "", b"busy"),
        _ => answer("404 Not Found", "", b""),
    })
    .await;
    let err = failed_copy(&server.url, blob).await;

    assert!(
        matches!(
            err,
            CopyError::Registry(RegistryError::Server { status: 503, .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // The transport's attempts, and no blob restart on top of them.
    assert_eq!(
        server.count("HEAD /v2/dst/blobs/"),
        retry().max_attempts as usize
    );
    assert_eq!(server.count("POST "), 0);
}

#[tokio::test]
async fn given_a_source_body_cut_short_when_copied_then_the_blob_starts_over_and_arrives() {
    let blob: &'static [u8] = b"layer bytes";
    let gets = AtomicUsize::new(0);
    let server = test_server::start(move |method, target| match (method, target) {
        ("HEAD", _) => answer("404 Not Found", "", b""),
        ("POST", _) => answer(
            "202 Accepted",
            "Location: /v2/dst/blobs/uploads/s1\r\n",
            b"",
        ),
        ("GET", _) if gets.fetch_add(1, Ordering::SeqCst) == 0 => {
            // Promises the whole blob, sends five bytes, closes.
            let mut cut = answer("200 OK", "", blob);
            cut.truncate(cut.len() - blob.len() + 5);
            cut
        }
        ("GET", _) => answer("200 OK", "", blob),
        ("PUT", _) => answer("201 Created", "", b""),
        _ => answer("404 Not Found", "", b""),
    })
    .await;
    let stats = Stats::default();

    copy_blob(&server.url, blob, &stats).await.unwrap();

    assert_eq!(stats.blobs_uploaded.load(Ordering::Relaxed), 1);
    assert_eq!(
        server.count("GET /v2/src/blobs/"),
        2,
        "the blob started over"
    );
    assert_eq!(server.count("HEAD /v2/dst/blobs/"), 2);
}
