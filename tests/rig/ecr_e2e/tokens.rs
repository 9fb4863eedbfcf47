//! Expiring tokens: each valid until its own expiry, then ECR's 403
//! `DENIED` (GET and HEAD alike); never-issued ones get 401.

use std::time::{Instant, SystemTime};

use super::*;

const EXPIRED: &str = r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#;

#[test]
fn given_expiring_tokens_when_tokens_are_issued_superseded_and_expired_now_then_each_is_valid_until_its_own_expiry_and_then_gets_ecr_403(
) {
    let reg = Registry::start(ACCOUNT);
    let lifetime = Duration::from_secs(600);
    let proxy = expiring(&reg, lifetime);
    let handle = proxy.tokens();
    let ping = |user: &str, password: &str| ping(&proxy, user, password);
    let mark = reg.request_mark();

    // The first token is good from the start.
    let (u0, p0) = handle.current();
    assert_eq!(ping(&u0, &p0).status, 200);

    // A new one, valid for the lifetime from now; the old one too, still.
    let before = SystemTime::now();
    let (u1, p1, expires) = handle.issue();
    assert_ne!(p1, p0);
    assert_eq!(handle.current(), (u1.clone(), p1.clone()));
    assert!(expires >= before + lifetime && expires <= SystemTime::now() + lifetime);
    assert_eq!(ping(&u1, &p1).status, 200);
    assert_eq!(ping(&u0, &p0).status, 200);

    // The current one expires now: 403 DENIED, ECR's words; the older,
    // unexpired one still passes.
    handle.expire_now();
    let r = ping(&u1, &p1);
    assert_eq!(r.status, 403);
    assert_eq!(String::from_utf8_lossy(&r.body), EXPIRED);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(ping(&u0, &p0).status, 200);

    // A token never issued: 401 with a challenge, as before.
    let r = ping("AWS", "rotating-token-99");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let r = ping("AWS", "not-a-token");
    assert_eq!(r.status, 401);

    // A fresh token passes.
    let (u2, p2, _) = handle.issue();
    assert_eq!(ping(&u2, &p2).status, 200);

    let stats = proxy.stats();
    assert_eq!(stats.expired_tokens, 1);
    assert_eq!(stats.unauthorized, 2);
    assert_eq!(stats.stale_tokens, 0);
    assert_eq!(stats.tokens_issued, 2);
    // The refused ones never reached the registry.
    let pings = reg
        .requests_since(mark)
        .iter()
        .filter(|r| r.uri == "/v2/")
        .count();
    assert_eq!(pings, 5);
    assert_eq!(stats.forwarded, 5);
}

#[test]
fn given_expiring_tokens_when_the_lifetime_passes_then_get_and_head_get_ecr_403_and_head_has_no_body(
) {
    let reg = Registry::start(ACCOUNT);
    let lifetime = Duration::from_millis(800);
    let proxy = expiring(&reg, lifetime);
    let (user, password, expires) = proxy.tokens().issue();
    let auth = basic(&user, &password);
    let t0 = Instant::now();
    let fresh = ping(&proxy, &user, &password);
    if t0.elapsed() < lifetime {
        assert_eq!(fresh.status, 200);
    }
    let wait = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(50);
    std::thread::sleep(wait);

    let list = [("Authorization", auth.as_str())];
    let r = http_request(&proxy.host(), "GET", "/v2/app/tags/list", &list, b"").unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(String::from_utf8_lossy(&r.body), EXPIRED);

    let raw = raw_exchange(
        &proxy.host(),
        format!("HEAD /v2/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
    assert!(
        text.contains(&format!("Content-Length: {}", EXPIRED.len())),
        "{text}"
    );
    assert!(raw_body(&raw).is_empty(), "{text}");
    assert_eq!(proxy.stats().expired_tokens, 2);
}
