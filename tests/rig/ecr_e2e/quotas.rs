//! Per-API quotas: ECR's 429 without `Retry-After`, refusals that spend
//! nothing, metered and unmetered APIs side by side.

use std::time::Instant;

use super::*;

/// A front for `reg` with these quotas.
fn metered(reg: &Registry, quotas: EcrQuotas) -> FaultProxy {
    front(
        reg,
        ProxyOptions {
            quotas,
            ..ProxyOptions::default()
        },
    )
}

const RATE_EXCEEDED: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"Rate exceeded"}]}"#;

#[test]
fn given_a_put_image_quota_when_manifests_are_put_in_a_burst_then_the_excess_gets_ecr_429_without_retry_after_and_never_reaches_the_registry(
) {
    const RATE: f64 = 2.0;
    const PUTS: usize = 12;
    let reg = Registry::start(ACCOUNT);
    let body = manifest(&reg, "app", json!({}));
    let proxy = metered(
        &reg,
        EcrQuotas {
            put_image: Some(RATE),
            ..Default::default()
        },
    );
    let mark = reg.request_mark();
    let t0 = Instant::now();
    let answers: Vec<RawResponse> = (0..PUTS)
        .map(|i| {
            put_manifest(
                &proxy,
                &reg,
                &format!("/v2/app/manifests/t{i}"),
                OCI_MANIFEST,
                &body,
            )
        })
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let accepted = statuses.iter().filter(|&&s| s == 201).count();
    let refused: Vec<&RawResponse> = answers.iter().filter(|r| r.status == 429).collect();
    eprintln!("{statuses:?} in {elapsed:.3}s; {}", proxy.stats());

    assert_eq!(accepted + refused.len(), PUTS, "{statuses:?}");
    // The burst (one second's worth) passes at once...
    assert_eq!(&statuses[..2], &[201, 201], "{statuses:?}");
    // ...and no more than the bucket refilled meanwhile.
    let ceiling = (RATE + RATE * elapsed + 1e-9).floor() as usize;
    assert!(
        accepted <= ceiling,
        "{accepted} accepted in {elapsed:.3}s, quota allows {ceiling}: {statuses:?}"
    );
    assert!(!refused.is_empty(), "{statuses:?}");
    for r in &refused {
        assert_eq!(String::from_utf8_lossy(&r.body), RATE_EXCEEDED);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("retry-after"), None, "{:?}", r.headers);
    }

    let stats = proxy.stats();
    assert_eq!(stats.quota_throttled, refused.len() as u64);
    assert_eq!(stats.put_image_throttled, refused.len() as u64);
    assert_eq!(
        proxy.quota_throttled(EcrApi::PutImage),
        refused.len() as u64
    );
    assert_eq!(proxy.quota_throttled(EcrApi::BatchGetImage), 0);
    assert_eq!(stats.manifest_puts_forwarded, accepted as u64);
    assert_eq!(stats.forwarded, accepted as u64);
    // The registry saw exactly the accepted PUTs, and holds only their tags.
    assert_eq!(manifest_puts(&reg.requests_since(mark)), accepted);
    for (i, status) in statuses.iter().enumerate() {
        let r = reg.http(
            "HEAD",
            &format!("/v2/app/manifests/t{i}"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        );
        assert_eq!(r.status == 200, *status == 201, "tag t{i}: {status}");
    }

    // Other APIs are not metered: manifest GETs all pass meanwhile.
    for _ in 0..20 {
        let r = reg.http_at(
            &proxy.host(),
            "GET",
            "/v2/app/manifests/t0",
            &[("Accept", OCI_MANIFEST)],
            b"",
        );
        assert_eq!(r.status, 200);
    }
}

#[test]
fn given_an_exhausted_blob_head_quota_when_refused_heads_keep_coming_then_they_spend_nothing_and_a_token_refills_on_time(
) {
    const RATE: f64 = 5.0;
    let reg = Registry::start(ACCOUNT);
    let digest = put_blob(&reg, "app", b"some layer");
    let proxy = metered(
        &reg,
        EcrQuotas {
            batch_check_layer_availability: Some(RATE),
            ..Default::default()
        },
    );
    let head = || send(&proxy, &reg, "HEAD", &format!("/v2/app/blobs/{digest}"));
    let burst: Vec<u16> = (0..5).map(|_| head().status).collect();
    assert_eq!(burst, [200; 5]);
    // Hammer it: every refusal arrives well inside one refill interval of
    // the last success or refusal, so nearly all are refused.
    let t0 = Instant::now();
    let hammer: Vec<RawResponse> = (0..30).map(|_| head()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let refused = hammer.iter().filter(|r| r.status == 429).count();
    let passed = hammer.len() - refused;
    assert!(
        passed as f64 <= RATE * elapsed + 1.0,
        "{passed} passed in {elapsed:.3}s"
    );
    for r in hammer.iter().filter(|r| r.status == 429) {
        assert_eq!(r.header("retry-after"), None);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Had the refusals spent tokens, the bucket would be ~30 in debt; as
    // they spent none, two refill intervals buy a success.
    std::thread::sleep(Duration::from_secs_f64(2.0 / RATE));
    assert_eq!(head().status, 200, "{}", proxy.stats());
    // The other blob API has its own (here: no) quota.
    let get = send(&proxy, &reg, "GET", &format!("/v2/app/blobs/{digest}"));
    assert_eq!(get.status, 200);

    let stats = proxy.stats();
    let refused_total = refused as u64;
    assert_eq!(stats.quota_throttled, refused_total);
    assert_eq!(
        proxy.quota_throttled(EcrApi::BatchCheckLayerAvailability),
        refused_total
    );
    assert_eq!(stats.put_image_throttled, 0);
    // Every request but the refused ones reached the registry.
    assert_eq!(stats.forwarded, stats.requests - refused_total);
}

#[test]
fn given_a_spent_quota_when_a_head_is_refused_then_it_gets_status_and_headers_only() {
    let reg = Registry::start(ACCOUNT);
    let digest = put_blob(&reg, "app", b"some layer");
    // One request per 1000 s: the second is refused, whatever the timing.
    let proxy = metered(
        &reg,
        EcrQuotas {
            batch_check_layer_availability: Some(0.001),
            ..Default::default()
        },
    );
    let request = format!(
        "HEAD /v2/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        reg.auth_header()
    );
    let first = raw_exchange(&proxy.host(), request.as_bytes());
    assert!(
        first.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let raw = raw_exchange(&proxy.host(), request.as_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: application/json\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Content-Length: {}\r\n", RATE_EXCEEDED.len())),
        "{text}"
    );
    assert!(!text.to_ascii_lowercase().contains("retry-after"), "{text}");
    assert!(raw_body(&raw).is_empty(), "{text}");
    let stats = proxy.stats();
    assert_eq!((stats.quota_throttled, stats.forwarded), (1, 1));
}
