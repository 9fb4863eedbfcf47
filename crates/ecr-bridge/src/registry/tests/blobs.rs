//! Blobs and uploads: mounts, redirects, upload Locations.
use super::*;

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
        .repository("dst")
        .upload_start(Some((&digest, "src")))
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
async fn given_a_blob_redirected_to_a_presigned_url_whose_host_hangs_up_when_fetched_then_no_error_text_shows_the_query(
) {
    let s3 = test_server::start(|_, _| test_server::HANG_UP.to_vec()).await;
    let registry = redirecting_to_presigned(&s3.url).await;

    let err = match client(&registry.url)
        .repository("app")
        .blob_get(&Digest::sha256_of(b"layer"))
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
        .repository("dst")
        .upload_start(None)
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

    let get = client(&server.url)
        .repository("app")
        .blob_get(&digest)
        .await;
    let head = client(&server.url)
        .repository("app")
        .blob_head(&digest)
        .await;

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
    let registry = redirecting_to_presigned(&s3.url).await;

    let err = client(&registry.url)
        .repository("app")
        .blob_get(&Digest::sha256_of(b"layer"))
        .await
        .err()
        .expect("S3 refused");

    let all = everything_said(&err);
    assert!(all.contains("AccessDenied: Request has expired"), "{all}");
    assert!(!all.contains("X-Amz-") && !all.contains("SECRET"), "{all}");
}

/// A registry that answers every request with a redirect to a presigned
/// URL on `s3`, its query holding the signature.
async fn redirecting_to_presigned(s3: &str) -> test_server::TestServer {
    let presigned = format!("{s3}/bucket/layer?{PRESIGNED_QUERY}");
    test_server::start(move |_, _| {
        answer(
            "307 Temporary Redirect",
            &format!("Location: {presigned}\r\n"),
            b"",
        )
    })
    .await
}
