//! The transport: credentials, throttling, deadlines, retries.
use super::*;

#[tokio::test]
async fn given_a_token_expired_as_ecr_says_it_with_403_when_requesting_then_it_is_refreshed_once_and_the_request_succeeds(
) {
    let server = registry_where_tok0_expired().await;
    let (source, client) = rotating_client(&server.url);

    let got = get_v1(&client, "app").await.unwrap();

    assert_eq!(&got.bytes[..], MANIFEST);
    assert_eq!(source.generation.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(server.count("GET /v2/app/manifests/v1"), 2);
}

#[tokio::test]
async fn given_an_expired_token_and_a_head_which_has_no_body_when_requesting_then_v2_explains_the_403_and_the_token_is_refreshed(
) {
    let server = registry_where_tok0_expired().await;
    let (source, client) = rotating_client(&server.url);

    let head = head_v1(&client, "app").await.unwrap();

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

    let client = client_with(&server.url, fixed, quick_retry());

    let err = head_v1(&client, "app").await.unwrap_err();

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
    let (source, client) = rotating_client(&server.url);

    let err = head_v1(&client, "secret").await.unwrap_err();

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

    let client = client_with(&server.url, Arc::new(StaticCredentials(None)), retry);

    let got = get_v1(&client, "quota").await.unwrap();

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
    let bounded = client(&server.url).with_deadline(Some(deadline));
    let err = head_v1(&bounded, "app").await.unwrap_err();

    assert!(
        matches!(err, RegistryError::DeadlineReached { .. }),
        "{err:?}"
    );
    assert_retryable_within(&err, started, Duration::from_secs(2));
    // A passed deadline stops the next request before it is sent.
    let before = server.count("");
    let passed = client(&server.url).with_deadline(Some(Instant::now()));
    let again = head_v1(&passed, "app").await.unwrap_err();
    assert!(
        matches!(again, RegistryError::DeadlineReached { .. }),
        "{again:?}"
    );
    assert_eq!(server.count(""), before);
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
    let client = client_with(&server.url, Arc::new(StaticCredentials(None)), retry);
    let err = head_v1(&client, "app").await.unwrap_err();

    assert!(
        matches!(err, RegistryError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_retryable_within(&err, started, Duration::from_secs(5));
}

/// Asserts that `err` may be retried and came within `limit` of `started`.
fn assert_retryable_within(err: &RegistryError, started: Instant, limit: Duration) {
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
}
