//! A front for moto that answers `ecr:GetAuthorizationToken` with tokens a
//! [`FaultProxy`](crate::FaultProxy) will accept, logs every AWS call it
//! passes, can fail or slow chosen calls, and passes every other request to
//! moto unchanged.
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
//! not ([`AwsFront::check_policies_as_ecr`], `policies.rs`): moto stores any
//! policy text, while ECR refuses a policy naming a principal it does not
//! accept (a closed or never-existing account) with
//! `InvalidParameterException` "Invalid parameter at 'PolicyText' failed to
//! satisfy constraint: 'Invalid repository policy provided'" (not saying
//! which principal), and a `policyText` over its documented
//! 10,240-character length constraint.
//!
//! And it pages ECR's `DescribeRepositories`, `DescribeImages` and
//! `ListImages` as ECR does and moto does not (`paging.rs`): moto answers
//! the whole list at once, the front one page of it (100 by default,
//! `maxResults` up to 1000, at most [`AwsFrontOptions::ecr_page_cap`]) with
//! an opaque `nextToken`; each page is one logged call, its body as sent.
//!
//! Every call is logged ([`AwsCall`]: operation, body, status), so "no
//! write" and "calls per user" are what moto was asked; and where moto
//! cannot play a part the front does: [`AwsFront::fail`] answers chosen
//! calls with a 500 as an overloaded AWS endpoint would (moto cannot fail
//! on demand), [`AwsFront::delay`] holds them back.
//!
//! One request per connection (`Connection: close`), bodies buffered whole
//! (a chunked request body is de-chunked and sent on with `Content-Length`).

mod paging;
mod policies;

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;

use crate::fault_proxy::TokenHandle;
use crate::moto::{moto_account_of, DEFAULT_ACCOUNT};
use crate::tls::Conn;
use crate::wire::{exchange, read_body, read_head, write_head, Head, Listener, Upstream};
use policies::{PolicyRules, Refusal};

const GET_AUTHORIZATION_TOKEN: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const SET_REPOSITORY_POLICY: &str = "AmazonEC2ContainerRegistry_V20150921.SetRepositoryPolicy";

#[derive(Debug, Clone)]
pub struct AwsFrontOptions {
    /// Tokens for accounts without their own ([`AwsFront::set_tokens_for`]);
    /// `None`: those accounts get moto's own answer.
    pub tokens: Option<TokenHandle>,
    /// The account when neither the header nor moto names one.
    pub default_account: String,
    /// The region when the request has no SigV4 credential scope.
    pub default_region: String,
    /// ECR list pages are cut at this size even when `maxResults` asks for
    /// more (ECR may return fewer), so small test data spans several pages.
    pub ecr_page_cap: Option<usize>,
}

impl Default for AwsFrontOptions {
    fn default() -> Self {
        AwsFrontOptions {
            tokens: None,
            default_account: DEFAULT_ACCOUNT.to_string(),
            default_region: "us-east-1".to_string(),
            ecr_page_cap: None,
        }
    }
}

/// One AWS call as the front saw it.
#[derive(Debug, Clone)]
pub struct AwsCall {
    /// `Query`, `GetRepositoryPolicy`, `AssumeRole`, …
    pub operation: String,
    pub body: String,
    /// What the caller got.
    pub status: u16,
}

/// Calls of `operation` whose body contains `body_contains` get a 500.
#[derive(Debug, Clone)]
struct Failure {
    operation: String,
    body_contains: String,
}

/// A running front for one moto server. Stops accepting on drop.
pub struct AwsFront {
    listener: Listener,
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
    calls: Mutex<Vec<AwsCall>>,
    failures: Mutex<Vec<Failure>>,
    delays: Mutex<HashMap<String, Duration>>,
    /// Held while moto handles a DynamoDB write: DynamoDB applies each
    /// write to an item atomically (an `ADD` never loses a concurrent one);
    /// moto reads, changes and stores without a lock, so concurrent
    /// UpdateItems on one item lose updates unless they go one at a time.
    dynamodb_writes: Mutex<()>,
    /// The same for SQS ReceiveMessage: concurrent receives from moto can
    /// hand one message to two receivers inside its visibility timeout,
    /// which SQS does only rarely; the tests count deliveries.
    sqs_receives: Mutex<()>,
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
        let shared = Arc::new(FrontShared {
            moto: moto_url.trim_start_matches("http://").to_string(),
            opts,
            per_account: Mutex::new(HashMap::new()),
            policy_rules: Mutex::new(PolicyRules::default()),
            policies_refused: AtomicU64::new(0),
            policies_too_long: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            calls: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            delays: Mutex::new(HashMap::new()),
            dynamodb_writes: Mutex::new(()),
            sqs_receives: Mutex::new(()),
        });
        let serving = shared.clone();
        let listener = Listener::start("rig-aws-front", None, move |conn| serving.serve(conn));
        AwsFront { listener, shared }
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
        self.listener.host()
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

    /// How many calls the log holds: a mark for [`AwsFront::calls_since`].
    pub fn mark(&self) -> usize {
        self.shared.calls.lock().expect("call log").len()
    }

    /// Every call since `mark`, oldest first.
    pub fn calls_since(&self, mark: usize) -> Vec<AwsCall> {
        self.shared.calls.lock().expect("call log")[mark..].to_vec()
    }

    /// Calls of `operation` since `mark`.
    pub fn count_since(&self, mark: usize, operation: &str) -> usize {
        self.calls_since(mark)
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// Answer every `operation` whose body contains `body_contains` with a
    /// 500 `ServerException`, as an overloaded AWS endpoint would.
    pub fn fail(&self, operation: &str, body_contains: &str) {
        self.shared
            .failures
            .lock()
            .expect("failures")
            .push(Failure {
                operation: operation.into(),
                body_contains: body_contains.into(),
            });
    }

    /// No more failures from [`AwsFront::fail`].
    pub fn heal(&self) {
        self.shared.failures.lock().expect("failures").clear();
    }

    /// Hold every `operation` request this long before answering it: a
    /// slow ECR widens the window in which another writer can overtake.
    pub fn delay(&self, operation: &str, by: Duration) {
        self.shared
            .delays
            .lock()
            .expect("delays")
            .insert(operation.into(), by);
    }
}

/// `Query`, `AssumeRole`, …: the `X-Amz-Target` operation of a JSON
/// protocol call, else the `Action` of a query protocol one.
fn operation_of(head: &Head, body: &str) -> String {
    match head.header("x-amz-target") {
        Some(t) => t.rsplit('.').next().unwrap_or(t).to_string(),
        None => body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("?")
            .to_string(),
    }
}

/// An answer the front makes itself, framed as moto's would be passed on.
fn made(status: &str, headers: &[(&str, String)], body: Vec<u8>) -> Upstream {
    let mut head = Vec::new();
    write_head(&mut head, status, headers, body.len()).expect("writing to memory");
    Upstream { head, body }
}

fn aws_json(request_id: String) -> [(&'static str, String); 2] {
    [
        ("Content-Type", "application/x-amz-json-1.1".to_string()),
        ("x-amzn-RequestId", request_id),
    ]
}

impl FrontShared {
    fn serve(&self, conn: Conn) -> io::Result<()> {
        let mut reader = BufReader::new(conn);
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &head)?;
        let mut out = reader.into_inner();
        let text = String::from_utf8_lossy(&body).into_owned();
        let operation = operation_of(&head, &text);
        let delay = self.delays.lock().expect("delays").get(&operation).copied();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let answer = self.answer(&head, &body, &operation, &text);
        self.calls.lock().expect("call log").push(AwsCall {
            operation,
            body: text,
            status: answer.status(),
        });
        answer.send(&mut out)
    }

    /// An injected failure, the front's own answer, or moto's.
    fn answer(&self, head: &Head, body: &[u8], operation: &str, text: &str) -> Upstream {
        let failing = self
            .failures
            .lock()
            .expect("failures")
            .iter()
            .any(|f| f.operation == operation && text.contains(&f.body_contains));
        if failing {
            let body = br#"{"__type":"ServerException","message":"injected by the test proxy"}"#;
            return made(
                "500 Internal Server Error",
                &aws_json("rig-aws-front-failed".into()),
                body.to_vec(),
            );
        }
        let target = head.header("x-amz-target").map(str::trim);
        if target == Some(GET_AUTHORIZATION_TOKEN) {
            if let Some(answer) = self.authorization_token(head, body) {
                let n = self.answered.fetch_add(1, Ordering::Relaxed) + 1;
                return made("200 OK", &aws_json(format!("rig-aws-front-{n}")), answer);
            }
        }
        if target == Some(SET_REPOSITORY_POLICY) {
            if let Some(refusal) = self.policy_refusal(body) {
                return refusal;
            }
        }
        if let Some(page) = target.and_then(|t| self.ecr_page(head, body, t)) {
            return page;
        }
        let atomic = target.is_some_and(|t| {
            ["UpdateItem", "PutItem", "DeleteItem"]
                .iter()
                .any(|w| t == format!("DynamoDB_20120810.{w}"))
        });
        let _one_receive_at_a_time = (target == Some("AmazonSQS.ReceiveMessage"))
            .then(|| self.sqs_receives.lock().unwrap_or_else(|e| e.into_inner()));
        let _one_at_a_time = atomic.then(|| {
            self.dynamodb_writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        });
        match exchange(&self.moto, head, body, &["expect"], None) {
            Ok(resp) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                resp
            }
            Err(e) => {
                let msg = format!("rig AWS front: moto failed: {e}");
                made("502 Bad Gateway", &[], msg.into_bytes())
            }
        }
    }

    /// ECR's 400 for a `SetRepositoryPolicy` it would refuse.
    fn policy_refusal(&self, body: &[u8]) -> Option<Upstream> {
        let (kind, message) = self
            .policy_rules
            .lock()
            .expect("policy rules")
            .refusal(body)?;
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
        Some(made(
            "400 Bad Request",
            &aws_json("rig-aws-front-refused".into()),
            answer.into_bytes(),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

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
