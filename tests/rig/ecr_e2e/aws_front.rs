//! The AWS front: `GetAuthorizationToken` answered with the fault front's
//! fresh tokens (per account), everything else reaching moto.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::*;

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

/// moto, and an AWS front before it without tokens of its own.
fn moto_behind_a_front() -> (Moto, AwsFront) {
    let moto = Moto::start();
    let front = AwsFront::start_with(&moto.url(), AwsFrontOptions::default());
    (moto, front)
}

/// `GetAuthorizationToken` through `front` with a static key, acting in
/// `account` (moto's header) and `region`.
fn token_call(front: &AwsFront, account: &str, region: &str) -> RawResponse {
    let in_account = [("x-moto-account-id", account)];
    let host = front.host();
    ecr_call(
        &host,
        "GetAuthorizationToken",
        "AKIDSTATIC",
        region,
        &in_account,
        &json!({}),
    )
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
    let proxy = expiring(&reg, lifetime);
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
        let (user, password) = creds.split_once(':').expect("user:password");
        ping(&proxy, user, password).status
    };
    assert_eq!(ping(&creds), 200);

    // moto's account header wins; each call issues a new token, and the
    // previous stays good until its own expiry.
    let (creds2, _, endpoint2) = token_of(&token_call(&front, "333333333333", "us-east-2"));
    assert_eq!(
        endpoint2,
        "https://333333333333.dkr.ecr.us-east-2.amazonaws.com"
    );
    assert_ne!(creds2, creds);
    assert_eq!(ping(&creds2), 200);
    assert_eq!(ping(&creds), 200);

    // An account with its own proxy gets that proxy's tokens.
    let other = expiring(&reg, lifetime);
    front.set_tokens_for("444444444444", other.tokens());
    let (creds3, _, _) = token_of(&token_call(&front, "444444444444", "us-east-1"));
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
    let (_moto, front) = moto_behind_a_front();
    let (creds, _, endpoint) = token_of(&token_call(&front, ACCOUNT, "us-east-1"));
    assert_eq!(creds, format!("AWS:{ACCOUNT}-auth-token"));
    assert_eq!(
        endpoint,
        format!("https://{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
    );
    assert_eq!(front.authorization_tokens_answered(), 0);
    assert_eq!(front.forwarded(), 1);
}

#[test]
fn given_an_aws_front_when_calls_are_failed_delayed_and_healed_then_its_log_says_what_each_got_and_the_rest_reach_moto(
) {
    let (moto, front) = moto_behind_a_front();
    let in_account = [("x-moto-account-id", ACCOUNT)];
    let create = |name: &str| {
        let body = json!({ "repositoryName": name });
        ecr_call(
            &front.host(),
            "CreateRepository",
            "AKIDSTATIC",
            "us-east-1",
            &in_account,
            &body,
        )
    };
    let mark = front.mark();
    assert_eq!(create("one").status, 200);

    // A 500 for the calls whose body names "two", as an overloaded ECR
    // would answer; moto never sees them.
    front.fail("CreateRepository", "\"two\"");
    let r = create("two");
    assert_eq!(r.status, 500);
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert!(String::from_utf8_lossy(&r.body).contains("ServerException"));
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, "us-east-1", "two"),
        None
    );
    assert_eq!(create("three").status, 200, "another body passes");

    // Healed, and one operation slowed.
    front.heal();
    front.delay("DescribeRepositories", Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let body = json!({ "repositoryNames": ["one"] });
    let r = ecr_call(
        &front.host(),
        "DescribeRepositories",
        "AKIDSTATIC",
        "us-east-1",
        &in_account,
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(create("two").status, 200);
    // A query-protocol call is named by its Action.
    assume_role(&front.host(), &format!("arn:aws:iam::{ACCOUNT}:role/r"));

    let calls = front.calls_since(mark);
    let seen: Vec<(&str, u16)> = calls
        .iter()
        .map(|c| (c.operation.as_str(), c.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("CreateRepository", 200),
            ("CreateRepository", 500),
            ("CreateRepository", 200),
            ("DescribeRepositories", 200),
            ("CreateRepository", 200),
            ("AssumeRole", 200),
        ]
    );
    assert!(calls[1].body.contains("\"two\"") && !calls[2].body.contains("\"two\""));
    assert_eq!(front.count_since(mark, "CreateRepository"), 4);
    assert_eq!(front.count_since(front.mark(), "CreateRepository"), 0);
    assert_eq!(front.forwarded(), 5);
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, "us-east-1", "two"),
        Some(false)
    );
}
