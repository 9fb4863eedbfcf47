//! The ECR behaviours of [`FaultProxy`] and the [`AwsFront`], driven with
//! raw HTTP against real registries (and moto), checking what the client
//! gets and what reached the registry. Needs docker-registry, htpasswd and
//! (for the AWS front and `Repositories::Moto`) moto.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::*;

const ACCOUNT: &str = "222222222222";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

/// One request through `proxy` with the registry's own credentials.
fn via(
    proxy: &FaultProxy,
    reg: &Registry,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let auth = reg.auth_header();
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    http_request(&proxy.host(), method, path, &all, body)
        .unwrap_or_else(|e| panic!("{method} {path} via proxy: {e}"))
}

/// Sends `request` as is and returns everything the server sent back.
fn raw_exchange(host: &str, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(host).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The body bytes after the head of a raw answer.
fn raw_body(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    &raw[end + 4..]
}

fn error_of(r: &RawResponse) -> (String, String) {
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)));
    (
        v["errors"][0]["code"].as_str().unwrap_or_default().into(),
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .into(),
    )
}

/// Uploads `bytes` into `repo` straight at the registry; returns the digest.
fn put_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let r = reg.http("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("Location");
    let path = &location[location.find("/v2/").expect("/v2/ in Location")..];
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = reg.http(
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    digest
}

/// An OCI image manifest whose blobs `repo` holds, with `extra` fields
/// merged in (or replacing the defaults).
fn manifest(reg: &Registry, repo: &str, extra: Value) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = format!("layer of {repo}").into_bytes();
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": put_blob(reg, repo, config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": put_blob(reg, repo, &layer), "size": layer.len()}],
    });
    for (k, v) in extra.as_object().expect("extra is an object") {
        doc[k] = v.clone();
    }
    serde_json::to_vec(&doc).unwrap()
}

fn manifest_puts(reqs: &[RequestRecord]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/"))
        .count()
}

const RATE_EXCEEDED: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"Rate exceeded"}]}"#;

#[test]
fn given_a_put_image_quota_when_manifests_are_put_in_a_burst_then_the_excess_gets_ecr_429_without_retry_after_and_never_reaches_the_registry(
) {
    const RATE: f64 = 2.0;
    const PUTS: usize = 12;
    let reg = Registry::start(ACCOUNT);
    let body = manifest(&reg, "app", json!({}));
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            quotas: EcrQuotas {
                put_image: Some(RATE),
                ..Default::default()
            },
            ..ProxyOptions::default()
        },
    );
    let mark = reg.request_mark();
    let t0 = Instant::now();
    let answers: Vec<RawResponse> = (0..PUTS)
        .map(|i| {
            via(
                &proxy,
                &reg,
                "PUT",
                &format!("/v2/app/manifests/t{i}"),
                &[("Content-Type", OCI_MANIFEST)],
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
        let r = via(
            &proxy,
            &reg,
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
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            quotas: EcrQuotas {
                batch_check_layer_availability: Some(RATE),
                ..Default::default()
            },
            ..ProxyOptions::default()
        },
    );
    let head = || {
        via(
            &proxy,
            &reg,
            "HEAD",
            &format!("/v2/app/blobs/{digest}"),
            &[],
            b"",
        )
    };
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
    let get = via(
        &proxy,
        &reg,
        "GET",
        &format!("/v2/app/blobs/{digest}"),
        &[],
        b"",
    );
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
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            quotas: EcrQuotas {
                batch_check_layer_availability: Some(0.001),
                ..Default::default()
            },
            ..ProxyOptions::default()
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

const EXPIRED: &str = r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#;

#[test]
fn given_expiring_tokens_when_tokens_are_issued_superseded_and_expired_now_then_each_is_valid_until_its_own_expiry_and_then_gets_ecr_403(
) {
    let reg = Registry::start(ACCOUNT);
    let lifetime = Duration::from_secs(600);
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring { lifetime }),
            ..ProxyOptions::default()
        },
    );
    let handle = proxy.tokens();
    let ping = |user: &str, password: &str| {
        http_request(
            &proxy.host(),
            "GET",
            "/v2/",
            &[("Authorization", &basic(user, password))],
            b"",
        )
        .unwrap()
    };
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
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring { lifetime }),
            ..ProxyOptions::default()
        },
    );
    let (user, password, expires) = proxy.tokens().issue();
    let auth = basic(&user, &password);
    let t0 = Instant::now();
    let fresh = http_request(
        &proxy.host(),
        "GET",
        "/v2/",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    if t0.elapsed() < lifetime {
        assert_eq!(fresh.status, 200);
    }
    let wait = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(50);
    std::thread::sleep(wait);

    let r = http_request(
        &proxy.host(),
        "GET",
        "/v2/app/tags/list",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
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

/// STS AssumeRole through `host`; the temporary access key id.
fn assume_role(host: &str, role_arn: &str) -> String {
    let body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=rig",
        role_arn.replace(':', "%3A").replace('/', "%2F")
    );
    let r = http_request(
        host,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDSTATIC/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        body.as_bytes(),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{text}");
    let start = text.find("<AccessKeyId>").expect("AccessKeyId") + "<AccessKeyId>".len();
    let end = start + text[start..].find("</AccessKeyId>").unwrap();
    text[start..end].to_string()
}

fn ecr_call(
    host: &str,
    action: &str,
    key: &str,
    region: &str,
    extra: &[(&str, &str)],
    body: &Value,
) -> RawResponse {
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{action}");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={key}/20260101/{region}/ecr/aws4_request, SignedHeaders=host;x-amz-target, Signature=0"
    );
    let mut headers = vec![
        ("X-Amz-Target", target.as_str()),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Authorization", auth.as_str()),
    ];
    headers.extend_from_slice(extra);
    http_request(host, "POST", "/", &headers, body.to_string().as_bytes()).unwrap()
}

/// (user:password decoded, expiresAt, proxyEndpoint) of the first entry.
fn token_of(r: &RawResponse) -> (String, f64, String) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let d = &v["authorizationData"][0];
    let token = base64::engine::general_purpose::STANDARD
        .decode(d["authorizationToken"].as_str().unwrap())
        .unwrap();
    (
        String::from_utf8(token).unwrap(),
        d["expiresAt"].as_f64().expect("expiresAt is a number"),
        d["proxyEndpoint"].as_str().unwrap().to_string(),
    )
}

#[test]
fn given_an_aws_front_when_get_authorization_token_is_called_then_it_answers_with_the_proxys_fresh_token_and_everything_else_reaches_moto(
) {
    let moto = Moto::start();
    let reg = Registry::start(ACCOUNT);
    let lifetime = Duration::from_secs(3600);
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring { lifetime }),
            ..ProxyOptions::default()
        },
    );
    let front = AwsFront::start(&moto.url(), proxy.tokens());

    // STS passes through (query protocol, XML back); the key it hands out
    // belongs to the role's account in moto.
    let key = assume_role(
        &front.host(),
        &format!("arn:aws:iam::{ACCOUNT}:role/replicator"),
    );
    assert_eq!(front.forwarded(), 1);

    // GetAuthorizationToken with that key in eu-west-1: the front answers,
    // with the proxy's newest token, a real expiry and the caller's registry.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let r = ecr_call(
        &front.host(),
        "GetAuthorizationToken",
        &key,
        "eu-west-1",
        &[],
        &json!({}),
    );
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    let (creds, expires_at, endpoint) = token_of(&r);
    let (user, password) = proxy.tokens().current();
    assert_eq!(creds, format!("{user}:{password}"));
    assert_ne!(creds, format!("AWS:{ACCOUNT}-auth-token"), "moto's token");
    assert!(
        (expires_at - (now + lifetime.as_secs_f64())).abs() < 30.0,
        "expiresAt {expires_at}, now {now}"
    );
    assert_eq!(
        endpoint,
        format!("https://{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com")
    );
    // The token opens the registry behind the proxy.
    let ping = |creds: &str| {
        http_request(
            &proxy.host(),
            "GET",
            "/v2/",
            &[("Authorization", &format!("Basic {}", b64(creds)))],
            b"",
        )
        .unwrap()
        .status
    };
    assert_eq!(ping(&creds), 200);

    // moto's account header wins; each call issues a new token, and the
    // previous stays good until its own expiry.
    let r = ecr_call(
        &front.host(),
        "GetAuthorizationToken",
        "AKIDSTATIC",
        "us-east-2",
        &[("x-moto-account-id", "333333333333")],
        &json!({}),
    );
    let (creds2, _, endpoint2) = token_of(&r);
    assert_eq!(
        endpoint2,
        "https://333333333333.dkr.ecr.us-east-2.amazonaws.com"
    );
    assert_ne!(creds2, creds);
    assert_eq!(ping(&creds2), 200);
    assert_eq!(ping(&creds), 200);

    // An account with its own proxy gets that proxy's tokens.
    let other = FaultProxy::start(
        &reg,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring { lifetime }),
            ..ProxyOptions::default()
        },
    );
    front.set_tokens_for("444444444444", other.tokens());
    let r = ecr_call(
        &front.host(),
        "GetAuthorizationToken",
        "AKIDSTATIC",
        "us-east-1",
        &[("x-moto-account-id", "444444444444")],
        &json!({}),
    );
    let (creds3, _, _) = token_of(&r);
    let (u, p) = other.tokens().current();
    assert_eq!(creds3, format!("{u}:{p}"));
    assert_eq!(front.authorization_tokens_answered(), 3);
    assert_eq!(proxy.stats().tokens_issued, 2);
    assert_eq!(other.stats().tokens_issued, 1);

    // Everything else is moto's: CreateRepository through the front (the
    // assumed role's key: moto puts it in the role's account) ...
    let r = ecr_call(
        &front.host(),
        "CreateRepository",
        &key,
        "eu-west-1",
        &[],
        &json!({"repositoryName": "via-front"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let created: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(created["repository"]["repositoryName"], "via-front");
    assert_eq!(created["repository"]["registryId"], ACCOUNT);
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, "eu-west-1", "via-front"),
        Some(false)
    );
    // ... and DescribeRepositories, with moto's error for a missing one.
    let r = ecr_call(
        &front.host(),
        "DescribeRepositories",
        &key,
        "eu-west-1",
        &[],
        &json!({"repositoryNames": ["nope"]}),
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("RepositoryNotFoundException"));

    // A chunked request body reaches moto whole.
    let json_body =
        json!({"repositoryName": "chunked/one", "imageTagMutability": "IMMUTABLE"}).to_string();
    let (a, b) = json_body.split_at(10);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: AmazonEC2ContainerRegistry_V20150921.CreateRepository\r\nContent-Type: application/x-amz-json-1.1\r\nx-moto-account-id: {ACCOUNT}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDSTATIC/20260101/eu-west-1/ecr/aws4_request, SignedHeaders=host, Signature=0\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len(),
        host = front.host(),
    );
    let raw = raw_exchange(&front.host(), request.as_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, "eu-west-1", "chunked/one"),
        Some(true)
    );
    assert_eq!(front.forwarded(), 4);
    assert_eq!(front.authorization_tokens_answered(), 3);
}

#[test]
fn given_an_aws_front_without_a_token_handle_when_get_authorization_token_is_called_then_moto_answers_it(
) {
    let moto = Moto::start();
    let front = AwsFront::start_with(&moto.url(), AwsFrontOptions::default());
    let r = ecr_call(
        &front.host(),
        "GetAuthorizationToken",
        "AKIDSTATIC",
        "us-east-1",
        &[("x-moto-account-id", ACCOUNT)],
        &json!({}),
    );
    let (creds, _, endpoint) = token_of(&r);
    assert_eq!(creds, format!("AWS:{ACCOUNT}-auth-token"));
    assert_eq!(
        endpoint,
        format!("https://{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
    );
    assert_eq!(front.authorization_tokens_answered(), 0);
    assert_eq!(front.forwarded(), 1);
}

#[test]
fn given_referrer_refusals_when_manifests_with_parameterised_media_types_or_a_subject_are_put_then_ecr_405_unsupported_and_nothing_reaches_the_registry(
) {
    let reg = Registry::start(ACCOUNT);
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            refuse_media_type_parameters: true,
            refuse_referrers: true,
            ..ProxyOptions::default()
        },
    );
    let bundle = "application/vnd.dev.sigstore.bundle+json;version=0.2";
    let plain = manifest(&reg, "app", json!({}));
    let put = |tag: &str, content_type: &str, body: &[u8]| {
        via(
            &proxy,
            &reg,
            "PUT",
            &format!("/v2/app/manifests/{tag}"),
            &[("Content-Type", content_type)],
            body,
        )
    };
    let r = put("plain", OCI_MANIFEST, &plain);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let subject_digest = sha256_digest(&plain);
    let mark = reg.request_mark();

    let layer = put_blob(&reg, "app", b"bundle");
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "content-type",
            format!("{OCI_MANIFEST}; charset=utf-8"),
            plain.clone(),
            "charset=utf-8",
        ),
        (
            "artifact-type",
            OCI_MANIFEST.to_string(),
            manifest(&reg, "app", json!({"artifactType": bundle})),
            bundle,
        ),
        (
            "layer-type",
            OCI_MANIFEST.to_string(),
            manifest(
                &reg,
                "app",
                json!({"layers": [{"mediaType": bundle, "digest": layer, "size": 6}]}),
            ),
            bundle,
        ),
        (
            "referrer",
            OCI_MANIFEST.to_string(),
            manifest(
                &reg,
                "app",
                json!({"artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                       "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": plain.len()}}),
            ),
            "subject",
        ),
    ];
    for (tag, content_type, body, named) in &cases {
        let r = put(tag, content_type, body);
        assert_eq!(r.status, 405, "{tag}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let (code, message) = error_of(&r);
        assert_eq!(code, "UNSUPPORTED", "{tag}");
        assert!(message.contains(named), "{tag}: {message}");
        let held = reg.http(
            "HEAD",
            &format!("/v2/app/manifests/{tag}"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        );
        assert_eq!(held.status, 404, "{tag} reached the registry");
    }
    assert_eq!(manifest_puts(&reg.requests_since(mark)), 0);
    let stats = proxy.stats();
    assert_eq!(stats.referrers_refused, 4);
    assert_eq!(stats.manifest_puts_forwarded, 1);

    // Each refusal is its own option: without the referrer one a subject
    // passes, without the media-type one parameters pass.
    let only_params = FaultProxy::start(
        &reg,
        ProxyOptions {
            refuse_media_type_parameters: true,
            ..ProxyOptions::default()
        },
    );
    let only_referrers = FaultProxy::start(
        &reg,
        ProxyOptions {
            refuse_referrers: true,
            ..ProxyOptions::default()
        },
    );
    let r = via(
        &only_params,
        &reg,
        "PUT",
        "/v2/app/manifests/referrer",
        &[("Content-Type", OCI_MANIFEST)],
        &cases[3].2,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = via(
        &only_referrers,
        &reg,
        "PUT",
        "/v2/app/manifests/artifact-type",
        &[("Content-Type", OCI_MANIFEST)],
        &cases[1].2,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        only_params.stats().referrers_refused + only_referrers.stats().referrers_refused,
        0
    );
}

#[test]
fn given_create_on_push_for_a_namespace_when_a_missing_repository_is_pushed_to_then_it_is_created_and_reads_still_get_name_unknown(
) {
    let reg = Registry::start(ACCOUNT);
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            create_on_push: vec!["prod".into()],
            ..ProxyOptions::ecr()
        },
    );
    let name_unknown = |r: &RawResponse, what: &str| {
        assert_eq!(r.status, 404, "{what}");
        if !r.body.is_empty() {
            assert_eq!(error_of(r).0, "NAME_UNKNOWN", "{what}");
        }
    };
    // Reads of a missing repository: NAME_UNKNOWN, nothing created.
    name_unknown(
        &via(&proxy, &reg, "GET", "/v2/prod/app/manifests/v1", &[], b""),
        "manifest GET",
    );
    name_unknown(
        &via(&proxy, &reg, "HEAD", "/v2/prod/app/manifests/v1", &[], b""),
        "manifest HEAD",
    );
    name_unknown(
        &via(
            &proxy,
            &reg,
            "HEAD",
            &format!("/v2/prod/app/blobs/sha256:{}", "0".repeat(64)),
            &[],
            b"",
        ),
        "blob HEAD",
    );
    name_unknown(
        &via(&proxy, &reg, "GET", "/v2/prod/app/tags/list", &[], b""),
        "tags",
    );
    // Outside the namespace a push is refused as before.
    name_unknown(
        &via(
            &proxy,
            &reg,
            "POST",
            "/v2/production/app/blobs/uploads/",
            &[],
            b"",
        ),
        "other namespace",
    );
    name_unknown(
        &via(&proxy, &reg, "POST", "/v2/prod/blobs/uploads/", &[], b""),
        "the prefix itself",
    );
    assert_eq!(proxy.stats().created_on_push, 0);
    assert_eq!(proxy.stats().forwarded, 0);

    // The first upload POST creates it and goes on; the next finds it.
    let r = via(
        &proxy,
        &reg,
        "POST",
        "/v2/prod/app/blobs/uploads/",
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(proxy.stats().created_on_push, 1);
    let r = via(
        &proxy,
        &reg,
        "POST",
        "/v2/prod/app/blobs/uploads/",
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(proxy.stats().created_on_push, 1);
    // Reads now reach the registry.
    let (unknown_before, forwarded_before) = (proxy.stats().name_unknown, proxy.stats().forwarded);
    via(&proxy, &reg, "GET", "/v2/prod/app/tags/list", &[], b"");
    assert_eq!(proxy.stats().name_unknown, unknown_before);
    assert_eq!(proxy.stats().forwarded, forwarded_before + 1);

    // A manifest PUT creates one too (its blobs put straight at the registry).
    let body = manifest(&reg, "prod/team/svc", json!({}));
    let r = via(
        &proxy,
        &reg,
        "PUT",
        "/v2/prod/team/svc/manifests/v1",
        &[("Content-Type", OCI_MANIFEST)],
        &body,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(proxy.stats().created_on_push, 2);
    // Mutable: the tag can be put again.
    let r = via(
        &proxy,
        &reg,
        "PUT",
        "/v2/prod/team/svc/manifests/v1",
        &[("Content-Type", OCI_MANIFEST)],
        &body,
    );
    assert_eq!(r.status, 201);

    // ROOT ("" too) covers every name.
    let root = FaultProxy::start(
        &reg,
        ProxyOptions {
            create_on_push: vec!["ROOT".into()],
            ..ProxyOptions::ecr()
        },
    );
    name_unknown(
        &via(&root, &reg, "GET", "/v2/anything/manifests/v1", &[], b""),
        "ROOT read",
    );
    assert_eq!(
        via(&root, &reg, "POST", "/v2/anything/blobs/uploads/", &[], b"").status,
        202
    );
    assert_eq!(root.stats().created_on_push, 1);
}

#[test]
fn given_create_on_push_with_moto_repositories_when_a_push_arrives_then_moto_gets_the_repository_mutable(
) {
    let moto = Moto::start();
    let reg = Registry::start(ACCOUNT);
    let region = "eu-central-1";
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            repositories: Repositories::Moto {
                url: moto.url(),
                account: ACCOUNT.into(),
                region: region.into(),
            },
            create_on_push: vec![String::new()],
            ..ProxyOptions::ecr()
        },
    );
    let r = via(&proxy, &reg, "GET", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!((r.status, error_of(&r).0.as_str()), (404, "NAME_UNKNOWN"));
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, region, "team/app"),
        None
    );

    let r = via(
        &proxy,
        &reg,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, region, "team/app"),
        Some(false)
    );
    let r = via(
        &proxy,
        &reg,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(proxy.stats().created_on_push, 1);
    // Only in that account and region.
    assert_eq!(
        moto_repository(&moto.url(), "333333333333", region, "team/app"),
        None
    );
    assert!(!moto_create_repository(
        &moto.url(),
        ACCOUNT,
        region,
        "team/app"
    ));
}

#[test]
fn given_each_mount_behaviour_when_a_blob_mount_is_asked_then_it_is_forwarded_made_a_plain_upload_or_refused(
) {
    let reg = Registry::start(ACCOUNT);
    let bytes = b"a layer to mount";
    let digest = put_blob(&reg, "src", bytes);
    let proxy = |mount| {
        FaultProxy::start(
            &reg,
            ProxyOptions {
                mount,
                ..ProxyOptions::default()
            },
        )
    };
    let mount_path = |repo: &str| format!("/v2/{repo}/blobs/uploads/?mount={digest}&from=src");
    let held = |repo: &str| {
        reg.http("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"")
            .status
    };

    // Forward (default): the registry mounts.
    let fwd = proxy(MountBehaviour::Forward);
    let r = via(&fwd, &reg, "POST", &mount_path("dst-fwd"), &[], b"");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(held("dst-fwd"), 200);
    assert_eq!(fwd.stats().mounts_refused, 0);

    // Disabled: a plain upload POST reaches the registry; the client gets
    // a session it can finish.
    let off = proxy(MountBehaviour::Disabled);
    let mark = reg.request_mark();
    let r = via(&off, &reg, "POST", &mount_path("dst-off"), &[], b"");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("Location").to_string();
    assert!(
        location.contains("/v2/dst-off/blobs/uploads/"),
        "{location}"
    );
    assert_eq!(held("dst-off"), 404);
    let posts: Vec<String> = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.uri)
        .collect();
    assert_eq!(posts, ["/v2/dst-off/blobs/uploads/"]);
    let path = &location[location.find("/v2/").unwrap()..];
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = via(
        &off,
        &reg,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(held("dst-off"), 200);
    // Other query parameters survive.
    let mark = reg.request_mark();
    let r = via(
        &off,
        &reg,
        "POST",
        &format!("{}&rig=1", mount_path("dst-off2")),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    let posts: Vec<String> = reg
        .requests_since(mark)
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(posts, ["/v2/dst-off2/blobs/uploads/?rig=1"]);
    assert_eq!(off.stats().mounts_refused, 2);

    // Denied: 403 DENIED naming the permission, and not forwarded.
    let denied = proxy(MountBehaviour::Denied);
    let r = via(&denied, &reg, "POST", &mount_path("dst-no"), &[], b"");
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let (code, message) = error_of(&r);
    assert_eq!(code, "DENIED");
    assert!(
        message.contains("is not authorized to perform: ecr:GetDownloadUrlForLayer")
            && message.contains(":repository/src"),
        "{message}"
    );
    assert_eq!(denied.stats().forwarded, 0);
    assert_eq!(held("dst-no"), 404);
    // A plain upload is not a mount.
    assert_eq!(
        via(&denied, &reg, "POST", "/v2/dst-no/blobs/uploads/", &[], b"").status,
        202
    );
    assert_eq!(denied.stats().mounts_refused, 1);
    assert_eq!(denied.stats().forwarded, 1);
}

#[test]
fn given_the_earlier_ecr_options_when_driven_raw_then_they_answer_as_before_the_new_behaviours_were_added(
) {
    let reg = Registry::start(ACCOUNT);
    let front = FaultProxy::start(&reg, ProxyOptions::ecr());
    front.create_repository("frozen", true);

    // PATCH: 201, not forwarded. Unlisted repository: NAME_UNKNOWN.
    let r = via(
        &front,
        &reg,
        "PATCH",
        "/v2/frozen/blobs/uploads/some-session",
        &[],
        b"part",
    );
    assert_eq!((r.status, front.stats().forwarded), (201, 0));
    let r = via(&front, &reg, "POST", "/v2/missing/blobs/uploads/", &[], b"");
    assert_eq!((r.status, error_of(&r).0.as_str()), (404, "NAME_UNKNOWN"));

    // Immutable: a new tag goes in, the same tag again gets TAG_INVALID,
    // a digest PUT passes.
    let body = manifest(&reg, "frozen", json!({}));
    let put = |reference: &str| {
        via(
            &front,
            &reg,
            "PUT",
            &format!("/v2/frozen/manifests/{reference}"),
            &[("Content-Type", OCI_MANIFEST)],
            &body,
        )
    };
    assert_eq!(put("v1").status, 201);
    let r = put("v1");
    assert_eq!((r.status, error_of(&r).0.as_str()), (400, "TAG_INVALID"));
    assert_eq!(put(&sha256_digest(&body)).status, 201);
    let stats = front.stats();
    assert_eq!(
        (stats.tag_refusals, stats.name_unknown, stats.patches),
        (1, 1, 1)
    );
    assert_eq!(stats.manifest_puts_forwarded, 2);

    // Count-based rotation: 401 for the replaced token, counted as stale;
    // expire_now replaces the current token in this mode.
    let rotating = FaultProxy::start(
        &reg,
        ProxyOptions {
            tokens: Some(TokenRotation::EveryRequests(2)),
            ..ProxyOptions::default()
        },
    );
    let handle = rotating.tokens();
    let ping = |(user, password): &(String, String)| {
        http_request(
            &rotating.host(),
            "GET",
            "/v2/",
            &[("Authorization", &basic(user, password))],
            b"",
        )
        .unwrap()
        .status
    };
    let first = handle.current();
    assert_eq!([ping(&first), ping(&first), ping(&first)], [200, 200, 401]);
    let second = handle.current();
    assert_ne!(second, first);
    assert_eq!(ping(&second), 200);
    handle.expire_now();
    assert_eq!(ping(&second), 401);
    let (user, password, expires) = handle.issue();
    assert_eq!((user.clone(), password.clone()), handle.current());
    assert!(expires > SystemTime::now() + Duration::from_secs(11 * 3600));
    assert_eq!(ping(&(user, password)), 200);
    let stats = rotating.stats();
    assert_eq!((stats.unauthorized, stats.stale_tokens), (2, 2));
    assert_eq!(
        (stats.rotations, stats.expired_tokens, stats.tokens_issued),
        (2, 0, 0)
    );
}
