//! The client against scripted servers, by what is tested: the transport
//! (credentials, throttling, deadlines, retries), manifests and blobs.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::test_server;
use super::*;
use crate::digest::Digest;
use crate::reference::Selector;

mod blobs;
mod manifests;
mod transport;

fn tag(t: &str) -> Selector {
    Selector::Tag(t.to_string())
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_total_wait: Duration::from_secs(1),
        ..RetryPolicy::default()
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

fn answer(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

fn basic(password: &str) -> String {
    BasicCredentials::new("AWS", password).header_value()
}

const EXPIRED: &[u8] = br#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#;
const MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

/// Hands out `tok-<n>`, a new n on every refresh, as ECR's token source does.
#[derive(Debug, Default)]
struct Rotating {
    generation: AtomicUsize,
}

impl CredentialSource for Rotating {
    fn credentials(
        &self,
        refresh: bool,
    ) -> futures_util::future::BoxFuture<'_, Result<Option<BasicCredentials>, RegistryError>> {
        if refresh {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.generation.load(Ordering::SeqCst);
        Box::pin(async move { Ok(Some(BasicCredentials::new("AWS", format!("tok-{n}")))) })
    }
}

fn client_with(
    url: &str,
    credentials: Arc<dyn CredentialSource>,
    retry: RetryPolicy,
) -> RegistryClient {
    let timeouts = Timeouts::default();
    RegistryClient::new(
        http_client(&timeouts).unwrap(),
        Endpoint::parse(url, true).unwrap(),
        credentials,
        retry,
        timeouts,
    )
}

/// The manifest `<repository>:v1` through `client`: what most tests ask for.
async fn get_v1(
    client: &RegistryClient,
    repository: &str,
) -> Result<FetchedManifest, RegistryError> {
    client.repository(repository).manifest_get(&tag("v1")).await
}

/// A HEAD of the manifest `<repository>:v1` through `client`.
async fn head_v1(
    client: &RegistryClient,
    repository: &str,
) -> Result<Option<ManifestHead>, RegistryError> {
    client
        .repository(repository)
        .manifest_head(&tag("v1"))
        .await
}

/// A client whose credentials rotate as ECR's do, with their source (to
/// count the refreshes).
fn rotating_client(url: &str) -> (Arc<Rotating>, RegistryClient) {
    let source = Arc::new(Rotating::default());
    (source.clone(), client_with(url, source, quick_retry()))
}

/// ECR as it behaves once `tok-0` has expired: 403 with DENIED in the body
/// (no body for a HEAD), and `tok-1` accepted.
async fn registry_where_tok0_expired() -> test_server::TestServer {
    test_server::start_with(|r| {
        let auth = r.header("authorization").unwrap_or("");
        if auth == basic("tok-0") {
            answer("403 Forbidden", "Content-Type: application/json\r\n", if r.method == "HEAD" { b"" } else { EXPIRED })
        } else if auth == basic("tok-1") {
            answer(
                "200 OK",
                "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\r\n",
                if r.method == "HEAD" { b"" } else { MANIFEST },
            )
        } else {
            answer("401 Unauthorized", "", b"")
        }
    })
    .await
}

/// What a presigned S3 URL carries in its query, as ECR's redirects do.
const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token=SECRET-SESSION-TOKEN&X-Amz-Signature=0123456789abcdef";

/// `err`, its `Debug` and every cause in its chain, as one text.
fn everything_said(err: &RegistryError) -> String {
    let mut all = format!("{err} {err:?}");
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        all.push_str(&format!(" {c} {c:?}"));
        cause = c.source();
    }
    all
}
