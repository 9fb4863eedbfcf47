//! A front for moto that answers `ecr:GetAuthorizationToken` with tokens a
//! [`FaultProxy`](crate::FaultProxy) will accept, and passes every other
//! request to moto unchanged.
//!
//! moto always answers `GetAuthorizationToken` with
//! `base64("AWS:<account>-auth-token")` and an `expiresAt` in 2015, so code
//! that caches tokens until `expiresAt` and refreshes them (as ECR's 12-hour
//! tokens need) cannot be tested against it. Point `AWS_ENDPOINT_URL` at this
//! front instead: `GetAuthorizationToken` gets a token freshly issued by the
//! [`TokenHandle`] for the caller's account ([`TokenHandle::issue`], so with
//! [`TokenRotation::Expiring`](crate::TokenRotation) a real expiry), and
//! DescribeRepositories, STS, SSM, SQS... reach moto as sent.
//!
//! The caller's account is moto's `x-moto-account-id` header if present,
//! else the account moto gives the request's access key (asked of moto's
//! STS `GetCallerIdentity`, which knows assumed-role keys), else the
//! configured default; the region is the SigV4 credential scope's.
//!
//! It can also check `ecr:SetRepositoryPolicy` as ECR does and moto does
//! not ([`AwsFront::check_policies_as_ecr`]): moto stores any policy text, while
//! ECR refuses a policy naming a principal it does not accept (a closed or
//! never-existing account) with `InvalidParameterException` "Invalid
//! parameter at 'PolicyText' failed to satisfy constraint: 'Invalid
//! repository policy provided'" (not saying which principal), and a
//! `policyText` over its documented 10,240-character length constraint.
//!
//! One request per connection (`Connection: close`), bodies buffered whole
//! (a chunked request body is de-chunked and sent on with `Content-Length`).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;

use crate::ecr_behaviour::TokenHandle;
use crate::fault_proxy::{exchange, read_body, read_head, Head};
use crate::moto::DEFAULT_ACCOUNT;

const GET_AUTHORIZATION_TOKEN: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const SET_REPOSITORY_POLICY: &str = "AmazonEC2ContainerRegistry_V20150921.SetRepositoryPolicy";

/// ECR's answer to a policy naming a principal it does not accept.
pub(crate) const INVALID_POLICY_MESSAGE: &str =
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'";

/// What ECR checks in `SetRepositoryPolicy` and moto does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyRules {
    /// Accounts whose principals ECR refuses: a policy naming any of them
    /// (as `arn:…:iam::<account>:…` or a bare id) is refused whole.
    pub refused_accounts: BTreeSet<String>,
    /// The longest `policyText` accepted (ECR: 10,240 characters).
    pub max_policy_chars: Option<usize>,
}

impl PolicyRules {
    /// ECR's length limit and these refused accounts.
    pub(crate) fn ecr(refused_accounts: &[&str]) -> Self {
        PolicyRules {
            refused_accounts: refused_accounts.iter().map(|a| a.to_string()).collect(),
            max_policy_chars: Some(10_240),
        }
    }

    /// The error ECR would answer for this `SetRepositoryPolicy` body.
    fn refusal(&self, body: &[u8]) -> Option<(Refusal, String)> {
        let request: Value = serde_json::from_slice(body).ok()?;
        let text = request["policyText"].as_str()?;
        if let Some(max) = self.max_policy_chars {
            let length = text.chars().count();
            if length > max {
                // AWS's answer to a request member over its length constraint.
                return Some((
                    Refusal::TooLong,
                    format!("1 validation error detected: Value at 'policyText' failed to satisfy constraint: Member must have length less than or equal to {max}"),
                ));
            }
        }
        let policy: Value = serde_json::from_str(text).ok()?;
        let statements = match &policy["Statement"] {
            Value::Array(items) => items.clone(),
            one @ Value::Object(_) => vec![one.clone()],
            _ => Vec::new(),
        };
        let refused = statements
            .iter()
            .flat_map(|s| principal_accounts(&s["Principal"]))
            .any(|a| self.refused_accounts.contains(&a));
        refused.then(|| (Refusal::Principal, INVALID_POLICY_MESSAGE.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Principal,
    TooLong,
}

/// The account ids an IAM `Principal` names.
fn principal_accounts(principal: &Value) -> Vec<String> {
    let aws = match principal {
        Value::Object(p) => p.get("AWS").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let list = match aws {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|p| match p.split_once(":iam::") {
            Some((_, rest)) => rest.split(':').next().map(str::to_string),
            None => (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())).then_some(p),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct AwsFrontOptions {
    /// Tokens for accounts without their own ([`AwsFront::set_tokens_for`]);
    /// `None`: those accounts get moto's own answer.
    pub tokens: Option<TokenHandle>,
    /// The account when neither the header nor moto names one.
    pub default_account: String,
    /// The region when the request has no SigV4 credential scope.
    pub default_region: String,
}

impl Default for AwsFrontOptions {
    fn default() -> Self {
        AwsFrontOptions {
            tokens: None,
            default_account: DEFAULT_ACCOUNT.to_string(),
            default_region: "us-east-1".to_string(),
        }
    }
}

/// A running front for one moto server. Stops accepting on drop.
pub struct AwsFront {
    port: u16,
    shared: Arc<FrontShared>,
}

struct FrontShared {
    moto: String,
    opts: AwsFrontOptions,
    per_account: Mutex<HashMap<String, TokenHandle>>,
    policy_rules: Mutex<PolicyRules>,
    policies_refused: AtomicU64,
    policies_too_long: AtomicU64,
    answered: AtomicU64,
    forwarded: AtomicU64,
    stop: AtomicBool,
}

impl AwsFront {
    /// A front for moto at `moto_url` ("http://127.0.0.1:PORT") that answers
    /// `GetAuthorizationToken` for every account with tokens from `tokens`.
    pub fn start(moto_url: &str, tokens: TokenHandle) -> AwsFront {
        Self::start_with(
            moto_url,
            AwsFrontOptions {
                tokens: Some(tokens),
                ..AwsFrontOptions::default()
            },
        )
    }

    pub fn start_with(moto_url: &str, opts: AwsFrontOptions) -> AwsFront {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding AWS front");
        let port = listener.local_addr().expect("AWS front address").port();
        let shared = Arc::new(FrontShared {
            moto: moto_url.trim_start_matches("http://").to_string(),
            opts,
            per_account: Mutex::new(HashMap::new()),
            policy_rules: Mutex::new(PolicyRules::default()),
            policies_refused: AtomicU64::new(0),
            policies_too_long: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept = shared.clone();
        std::thread::Builder::new()
            .name("rig-aws-front".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = accept.clone();
                    std::thread::spawn(move || {
                        let _ = shared.serve(stream);
                    });
                }
            })
            .expect("starting AWS front");
        AwsFront { port, shared }
    }

    /// `account`'s `GetAuthorizationToken` answers come from `tokens` from now on.
    pub fn set_tokens_for(&self, account: &str, tokens: TokenHandle) {
        self.shared
            .per_account
            .lock()
            .expect("per-account tokens")
            .insert(account.to_string(), tokens);
    }

    /// From now on `SetRepositoryPolicy` is checked as ECR checks it: a
    /// policy naming any of `refused_accounts` is refused with
    /// `InvalidParameterException`, and one over ECR's 10,240 characters
    /// with `ValidationException` (moto takes both).
    pub fn check_policies_as_ecr(&self, refused_accounts: &[&str]) {
        *self.shared.policy_rules.lock().expect("policy rules") =
            PolicyRules::ecr(refused_accounts);
    }

    /// `SetRepositoryPolicy` calls refused for a principal.
    pub fn policies_refused(&self) -> u64 {
        self.shared.policies_refused.load(Ordering::Relaxed)
    }

    /// `SetRepositoryPolicy` calls refused for their length.
    pub fn policies_too_long(&self) -> u64 {
        self.shared.policies_too_long.load(Ordering::Relaxed)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// For `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `GetAuthorizationToken` calls the front answered itself.
    pub fn authorization_tokens_answered(&self) -> u64 {
        self.shared.answered.load(Ordering::Relaxed)
    }

    /// Requests passed on to moto.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for AwsFront {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.host());
    }
}

impl FrontShared {
    fn serve(&self, stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut out = stream;
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &head)?;
        let is_token_call = head
            .header("x-amz-target")
            .is_some_and(|t| t.trim() == GET_AUTHORIZATION_TOKEN);
        if is_token_call {
            if let Some(answer) = self.authorization_token(&head, &body) {
                self.answered.fetch_add(1, Ordering::Relaxed);
                let text = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: rig-aws-front-{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    self.answered.load(Ordering::Relaxed),
                    answer.len()
                );
                out.write_all(text.as_bytes())?;
                out.write_all(&answer)?;
                return out.flush();
            }
        }
        let is_policy_write = head
            .header("x-amz-target")
            .is_some_and(|t| t.trim() == SET_REPOSITORY_POLICY);
        let refusal = is_policy_write
            .then(|| {
                self.policy_rules
                    .lock()
                    .expect("policy rules")
                    .refusal(&body)
            })
            .flatten();
        if let Some((kind, message)) = refusal {
            let code = match kind {
                Refusal::Principal => {
                    self.policies_refused.fetch_add(1, Ordering::Relaxed);
                    "InvalidParameterException"
                }
                Refusal::TooLong => {
                    self.policies_too_long.fetch_add(1, Ordering::Relaxed);
                    "ValidationException"
                }
            };
            let answer = serde_json::json!({"__type": code, "message": message}).to_string();
            let text = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: rig-aws-front-refused\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            out.write_all(text.as_bytes())?;
            return out.flush();
        }
        match exchange(&self.moto, &head, &body, &["expect"], None) {
            Ok(resp) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                out.write_all(&resp.head)?;
                out.write_all(&resp.body)?;
                out.flush()
            }
            Err(e) => {
                let msg = format!("rig AWS front: moto failed: {e}");
                let text = format!(
                    "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                );
                out.write_all(text.as_bytes())?;
                out.flush()
            }
        }
    }

    /// The JSON answer, or None when no handle covers the account (moto answers).
    fn authorization_token(&self, head: &Head, body: &[u8]) -> Option<Vec<u8>> {
        let scope = head.header("authorization").and_then(credential_scope);
        let region = scope
            .as_ref()
            .map(|(_, region)| region.clone())
            .unwrap_or_else(|| self.opts.default_region.clone());
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let accounts: Vec<String> = match request["registryIds"].as_array() {
            Some(ids) if !ids.is_empty() => ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![self.caller_account(head, scope.as_ref().map(|(k, _)| k.as_str()))],
        };
        let mut data = Vec::new();
        for account in accounts {
            let handle = self
                .per_account
                .lock()
                .expect("per-account tokens")
                .get(&account)
                .cloned()
                .or_else(|| self.opts.tokens.clone())?;
            let (user, password, expires_at) = handle.issue();
            let expires = expires_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as f64 / 1000.0)
                .unwrap_or(0.0);
            data.push(serde_json::json!({
                "authorizationToken": base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{password}")),
                "expiresAt": expires,
                "proxyEndpoint": format!("https://{account}.dkr.ecr.{region}.amazonaws.com"),
            }));
        }
        Some(
            serde_json::json!({ "authorizationData": data })
                .to_string()
                .into_bytes(),
        )
    }

    fn caller_account(&self, head: &Head, access_key: Option<&str>) -> String {
        if let Some(a) = head.header("x-moto-account-id") {
            return a.to_string();
        }
        access_key
            .and_then(|k| moto_account_of(&self.moto, k))
            .unwrap_or_else(|| self.opts.default_account.clone())
    }
}

/// (access key id, region) from `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...`.
pub(crate) fn credential_scope(authorization: &str) -> Option<(String, String)> {
    let start = authorization.find("Credential=")? + "Credential=".len();
    let credential = authorization[start..]
        .split([',', ' '])
        .next()
        .unwrap_or("");
    let mut parts = credential.split('/');
    let key = parts.next().filter(|k| !k.is_empty())?;
    let _date = parts.next()?;
    let region = parts.next().filter(|r| !r.is_empty())?;
    Some((key.to_string(), region.to_string()))
}

/// The account moto's STS says `access_key` belongs to.
fn moto_account_of(moto_host: &str, access_key: &str) -> Option<String> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0"
    );
    let r = crate::http::request(
        moto_host,
        "POST",
        "/",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Authorization", &auth),
        ],
        b"Action=GetCallerIdentity&Version=2011-06-15",
    )
    .ok()?;
    if r.status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&r.body);
    let start = text.find("<Account>")? + "<Account>".len();
    let end = start + text[start..].find("</Account>")?;
    Some(text[start..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_policy(policy: Value) -> Vec<u8> {
        serde_json::json!({"repositoryName": "r", "policyText": policy.to_string()})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn given_a_refused_account_when_a_policy_names_it_then_refused_as_ecr_does_and_others_pass() {
        let rules = PolicyRules::ecr(&["999999999999"]);
        let naming = |principal: Value| {
            set_policy(serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "S", "Effect": "Allow", "Principal": principal, "Action": "ecr:BatchGetImage"}]}))
        };
        for refused in [
            serde_json::json!({"AWS": ["arn:aws:iam::111111111111:root", "arn:aws:iam::999999999999:root"]}),
            serde_json::json!({"AWS": "999999999999"}),
            serde_json::json!({"AWS": "arn:aws:iam::999999999999:role/ci"}),
        ] {
            let (kind, message) = rules.refusal(&naming(refused.clone())).expect("refused");
            assert_eq!(kind, Refusal::Principal, "{refused}");
            assert_eq!(message, INVALID_POLICY_MESSAGE);
        }
        assert_eq!(
            rules.refusal(&naming(
                serde_json::json!({"AWS": "arn:aws:iam::111111111111:root"})
            )),
            None
        );
        assert_eq!(rules.refusal(&naming(serde_json::json!("*"))), None);
    }

    #[test]
    fn given_a_policy_over_the_limit_when_checked_then_refused_for_its_length() {
        let rules = PolicyRules::ecr(&[]);
        let long = serde_json::json!({"Statement": [], "Id": "x".repeat(10_240)});
        let (kind, message) = rules.refusal(&set_policy(long)).expect("refused");
        assert_eq!(kind, Refusal::TooLong);
        assert!(message.contains("10240"), "{message}");
        assert_eq!(
            PolicyRules::default()
                .refusal(&set_policy(serde_json::json!({"Id": "x".repeat(20_000)}))),
            None
        );
    }

    #[test]
    fn given_a_sigv4_authorization_when_parsed_then_key_and_region_come_from_the_scope() {
        let h = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260101/eu-west-2/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(
            credential_scope(h),
            Some(("ASIAEXAMPLE".to_string(), "eu-west-2".to_string()))
        );
        assert_eq!(credential_scope("Basic QVdTOng="), None);
        assert_eq!(
            credential_scope("AWS4-HMAC-SHA256 Credential=AK/20260101"),
            None
        );
    }
}
