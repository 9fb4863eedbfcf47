//! Manifests: bodies read again when cut short.
use super::*;

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

    let got = get_v1(&client(&server.url), "app").await.unwrap();

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

    let err = get_v1(&client(&server.url), "app").await.unwrap_err();

    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(server.count("GET "), quick_retry().max_attempts as usize);
}
