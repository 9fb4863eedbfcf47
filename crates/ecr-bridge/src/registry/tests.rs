//! The client against scripted servers: retries, credentials, deadlines.
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

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

#[tokio::test]
async fn given_a_token_expired_as_ecr_says_it_with_403_when_requesting_then_it_is_refreshed_once_and_the_request_succeeds(
) {
    let server = registry_where_tok0_expired().await;
    let source = Arc::new(Rotating::default());

    let got = client_with(&server.url, source.clone(), quick_retry())
        .manifest_get("app", "v1")
        .await
        .unwrap();

    assert_eq!(&got.bytes[..], MANIFEST);
    assert_eq!(source.generation.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(server.count("GET /v2/app/manifests/v1"), 2);
}

#[tokio::test]
async fn given_an_expired_token_and_a_head_which_has_no_body_when_requesting_then_v2_explains_the_403_and_the_token_is_refreshed(
) {
    let server = registry_where_tok0_expired().await;
    let source = Arc::new(Rotating::default());

    let head = client_with(&server.url, source.clone(), quick_retry())
        .manifest_head("app", "v1")
        .await
        .unwrap();

    assert!(head.is_some_and(|h| h.digest.is_some()));
    assert_eq!(source.generation.load(Ordering::SeqCst), 1);
    assert_eq!(server.count("GET /v2/"), 1, "one probe to learn why");
    assert_eq!(server.count("HEAD /v2/app/manifests/v1"), 2);
}

#[tokio::test]
async fn given_fixed_credentials_whose_token_expired_when_requesting_then_a_permanent_error_says_so_and_how_to_get_a_new_one(
) {
    let server = registry_where_tok0_expired().await;
    let fixed = Arc::new(StaticCredentials(Some(BasicCredentials::new(
        "AWS", "tok-0",
    ))));

    let err = client_with(&server.url, fixed, quick_retry())
        .manifest_head("app", "v1")
        .await
        .unwrap_err();

    assert!(matches!(err, RegistryError::TokenExpired { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("Your authorization token has expired"),
        "{text}"
    );
    assert!(text.contains("aws ecr get-login-password"), "{text}");
    // Fixed credentials cannot be refreshed: the HEAD is not sent again.
    assert_eq!(server.count("HEAD /v2/app/manifests/v1"), 1);
}

#[tokio::test]
async fn given_a_403_for_one_repository_with_a_valid_token_when_requesting_then_denied_without_a_refresh(
) {
    let server = test_server::start(|method, target| match (method, target) {
        ("GET", "/v2/") => answer("200 OK", "", b"{}"),
        _ => answer("403 Forbidden", "", b""),
    })
    .await;
    let source = Arc::new(Rotating::default());

    let err = client_with(&server.url, source.clone(), quick_retry())
        .manifest_head("secret", "v1")
        .await
        .unwrap_err();

    assert!(matches!(err, RegistryError::Denied { .. }), "{err:?}");
    assert!(err.to_string().contains("valid for the registry"), "{err}");
    assert_eq!(source.generation.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn given_throttling_without_retry_after_past_the_attempt_budget_when_requesting_then_it_is_waited_out(
) {
    let calls = AtomicUsize::new(0);
    let server = test_server::start(move |_, _| {
        if calls.fetch_add(1, Ordering::SeqCst) < 5 {
            answer(
                "429 Too Many Requests",
                "Content-Type: application/json\r\n",
                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"Rate exceeded"}]}"#,
            )
        } else {
            answer(
                "200 OK",
                "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
                MANIFEST,
            )
        }
    })
    .await;
    let retry = RetryPolicy {
        max_throttle_backoff: Duration::from_millis(20),
        ..quick_retry()
    };

    let got = client_with(&server.url, Arc::new(StaticCredentials(None)), retry)
        .manifest_get("quota", "v1")
        .await
        .unwrap();

    assert_eq!(&got.bytes[..], MANIFEST);
    // Three attempts is the failure budget; throttled ones do not count.
    assert_eq!(server.count("GET /v2/quota/manifests/v1"), 6);
}

#[tokio::test]
async fn given_a_registry_that_never_answers_when_the_deadline_is_near_then_the_request_ends_before_it_with_a_retryable_error(
) {
    let server = test_server::start_with(|_| Vec::new()).await;
    let deadline = Instant::now() + Duration::from_millis(300);

    let started = Instant::now();
    let err = client(&server.url)
        .with_deadline(Some(deadline))
        .manifest_head("app", "v1")
        .await
        .unwrap_err();

    assert!(
        matches!(err, RegistryError::DeadlineReached { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A passed deadline stops the next request before it is sent.
    let before = server.count("");
    let again = client(&server.url)
        .with_deadline(Some(Instant::now()))
        .manifest_head("app", "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(again, RegistryError::DeadlineReached { .. }),
        "{again:?}"
    );
    assert_eq!(server.count(""), before);
}

#[tokio::test]
async fn given_a_mount_refused_with_403_when_starting_an_upload_then_a_plain_upload_session_is_opened(
) {
    let server = test_server::start(|method, target| match method {
        "POST" if target.contains("mount=") => answer(
            "403 Forbidden",
            "Content-Type: application/json\r\n",
            br#"{"errors":[{"code":"DENIED","message":"not authorized to perform: ecr:GetDownloadUrlForLayer"}]}"#,
        ),
        "POST" => answer("202 Accepted", "Location: /v2/dst/blobs/uploads/s1\r\n", b""),
        _ => answer("404 Not Found", "", b""),
    })
    .await;
    let digest = Digest::sha256_of(b"layer");

    let start = client(&server.url)
        .upload_start("dst", Some((&digest, "src")))
        .await
        .unwrap();

    assert!(
        matches!(start, UploadStart::Session(ref u) if u.path() == "/v2/dst/blobs/uploads/s1"),
        "{start:?}"
    );
    assert_eq!(server.count("POST /v2/dst/blobs/uploads/?mount="), 1);
    assert_eq!(server.count("POST /v2/dst/blobs/uploads/"), 2);
}

#[tokio::test]
async fn given_a_hostile_retry_after_when_retrying_then_no_panic_and_a_retryable_error_within_seconds(
) {
    let calls = AtomicUsize::new(0);
    let server = test_server::start(move |_, _| {
        let wait = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            "1"
        } else {
            "18446744073709551615"
        };
        answer(
            "503 Service Unavailable",
            &format!("Retry-After: {wait}\r\n"),
            b"busy",
        )
    })
    .await;
    let retry = RetryPolicy {
        max_total_wait: Duration::from_secs(30),
        ..quick_retry()
    };

    let started = Instant::now();
    let err = client_with(&server.url, Arc::new(StaticCredentials(None)), retry)
        .manifest_head("app", "v1")
        .await
        .unwrap_err();

    assert!(
        matches!(err, RegistryError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
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

#[tokio::test]
async fn given_a_blob_redirected_to_a_presigned_url_whose_host_hangs_up_when_fetched_then_no_error_text_shows_the_query(
) {
    let s3 = test_server::start(|_, _| test_server::HANG_UP.to_vec()).await;
    let presigned = format!("{}/bucket/layer?{PRESIGNED_QUERY}", s3.url);
    let registry = test_server::start(move |_, _| {
        answer(
            "307 Temporary Redirect",
            &format!("Location: {presigned}\r\n"),
            b"",
        )
    })
    .await;

    let err = match client(&registry.url)
        .blob_get("app", &Digest::sha256_of(b"layer"))
        .await
    {
        Ok(_) => panic!("the blob host hung up, yet the GET succeeded"),
        Err(e) => e,
    };

    assert!(err.is_retryable(), "{err:?}");
    let all = everything_said(&err);
    assert!(!all.contains("X-Amz-") && !all.contains("SECRET"), "{all}");
    assert!(all.contains("/bucket/layer"), "host and path stay: {all}");
    assert_eq!(
        s3.count("GET /bucket/layer?X-Amz-"),
        quick_retry().max_attempts as usize
    );
}

#[tokio::test]
async fn given_an_upload_location_on_plain_http_off_loopback_when_starting_an_upload_then_a_permanent_refusal_and_nothing_sent_there(
) {
    let server = test_server::start(|method, _| match method {
        "POST" => answer(
            "202 Accepted",
            &format!(
                "Location: http://10.0.0.5:5000/v2/dst/blobs/uploads/u1?{PRESIGNED_QUERY}\r\n"
            ),
            b"",
        ),
        _ => answer("404 Not Found", "", b""),
    })
    .await;

    let err = client(&server.url)
        .upload_start("dst", None)
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            RegistryError::UnsafeLocation {
                what: "upload Location",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("http://10.0.0.5:5000") && text.contains("only allowed to loopback"),
        "{text}"
    );
    assert!(!everything_said(&err).contains("X-Amz-"), "{err:?}");
    assert_eq!(server.count(""), 1, "only the POST");
}

#[tokio::test]
async fn given_a_blob_redirect_to_plain_http_off_loopback_when_fetched_then_a_permanent_refusal_without_the_query(
) {
    let server = test_server::start(|_, _| {
        answer(
            "307 Temporary Redirect",
            &format!("Location: http://bucket.s3.amazonaws.com/layer?{PRESIGNED_QUERY}\r\n"),
            b"",
        )
    })
    .await;
    let digest = Digest::sha256_of(b"layer");

    let get = client(&server.url).blob_get("app", &digest).await;
    let head = client(&server.url).blob_head("app", &digest).await;

    for err in [get.err().expect("GET refused"), head.unwrap_err()] {
        assert!(
            matches!(
                err,
                RegistryError::UnsafeLocation {
                    what: "redirect",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert!(!everything_said(&err).contains("X-Amz-"), "{err:?}");
    }
    assert_eq!(server.count(""), 2, "one GET, one HEAD, not retried");
}

#[tokio::test]
async fn given_a_presigned_url_refused_by_s3_with_an_error_echoing_its_query_when_fetched_then_the_error_keeps_only_code_and_message(
) {
    let s3 = test_server::start(|_, target| {
        let echoed = target.split_once('?').map(|(_, q)| q).unwrap_or_default().replace('&', "&amp;");
        let body = format!(
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message><X-Amz-Expires>600</X-Amz-Expires><CanonicalRequest>GET\n/bucket/layer\n{echoed}</CanonicalRequest></Error>"
        );
        answer("403 Forbidden", "Content-Type: application/xml\r\n", body.as_bytes())
    })
    .await;
    let presigned = format!("{}/bucket/layer?{PRESIGNED_QUERY}", s3.url);
    let registry = test_server::start(move |_, _| {
        answer(
            "307 Temporary Redirect",
            &format!("Location: {presigned}\r\n"),
            b"",
        )
    })
    .await;

    let err = client(&registry.url)
        .blob_get("app", &Digest::sha256_of(b"layer"))
        .await
        .err()
        .expect("S3 refused");

    let all = everything_said(&err);
    assert!(all.contains("AccessDenied: Request has expired"), "{all}");
    assert!(!all.contains("X-Amz-") && !all.contains("SECRET"), "{all}");
}
