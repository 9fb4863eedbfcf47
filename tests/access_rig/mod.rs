//! What the access-sync tests stand on: moto with the users table (and its
//! `NEW_AND_OLD_IMAGES` stream) in moto's default account and the
//! repositories in a second account reached through AssumeRole; a small
//! HTTP proxy in front of moto that logs every AWS call the function makes
//! and can answer chosen calls with a 5xx; and a reader of moto's stream API
//! that turns its records into the event Lambda would deliver.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use access_sync::config::Config;
use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use ecr_bridge_aws::access_sync::AccessSync;
use rig::{AwsFront, AwsFrontOptions, Moto};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub const TABLE: &str = "gen3-pay-models";
/// The account owning the repositories (moto's default account owns the table).
pub const REPOS: &str = "222222222222";
pub const REGION: &str = "us-east-1";
pub const PREFIX: &str = "nextflow-approved";
pub const ROLE: &str = "arn:aws:iam::222222222222:role/ecr-access-sync";
pub const SECRET_KEY: &str = "test-secret-key";

// ---------------------------------------------------------------------------
// The proxy

/// One AWS call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `Query`, `GetRepositoryPolicy`, `AssumeRole`, …
    pub operation: String,
    pub body: String,
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    body_contains: String,
}

/// A logging, fault-injecting HTTP/1.1 proxy in front of moto. The SDK sees
/// an ordinary endpoint; moto sees ordinary requests.
pub struct AwsProxy {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    delays: Arc<Mutex<HashMap<String, Duration>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    pub async fn start(upstream: String) -> AwsProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Vec::new()));
        let delays = Arc::new(Mutex::new(HashMap::new()));
        let http = reqwest::Client::new();
        let (c, f, d) = (calls.clone(), faults.clone(), delays.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, http, c, f, d) = (
                    upstream.clone(),
                    http.clone(),
                    c.clone(),
                    f.clone(),
                    d.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &http, &c, &f, &d).await;
                });
            }
        });
        AwsProxy {
            url,
            calls,
            faults,
            delays,
            task,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn mark(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    pub fn calls_since(&self, mark: usize) -> Vec<Call> {
        self.calls.lock().unwrap()[mark..].to_vec()
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
        self.faults.lock().unwrap().push(Fault {
            operation: operation.into(),
            body_contains: body_contains.into(),
        });
    }

    pub fn heal(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// Hold every `operation` request this long before passing it on: a
    /// slow ECR widens the window in which another writer can overtake.
    pub fn delay(&self, operation: &str, by: Duration) {
        self.delays.lock().unwrap().insert(operation.into(), by);
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    conn: tokio::net::TcpStream,
    upstream: &str,
    http: &reqwest::Client,
    calls: &Mutex<Vec<Call>>,
    faults: &Mutex<Vec<Fault>>,
    delays: &Mutex<HashMap<String, Duration>>,
) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(()); // client closed the connection
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        let mut parts = head[0].split(' ');
        let (method, path) = (
            parts.next().unwrap_or("GET").to_string(),
            parts.next().unwrap_or("/").to_string(),
        );
        let headers: Vec<(String, String)> = head[1..]
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(
            header("transfer-encoding").is_none(),
            "the SDK sent a chunked request; the test proxy only handles Content-Length"
        );
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        r.read_exact(&mut body).await?;
        let body_text = String::from_utf8_lossy(&body).to_string();
        let operation = match header("x-amz-target") {
            Some(t) => t.rsplit('.').next().unwrap_or(t).to_string(),
            None => body_text
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or("?")
                .to_string(),
        };
        let delay = delays.lock().unwrap().get(&operation).copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let injected = faults
            .lock()
            .unwrap()
            .iter()
            .any(|f| f.operation == operation && body_text.contains(&f.body_contains));
        let (status, resp_headers, resp_body) = if injected {
            (
                500,
                vec![(
                    "content-type".to_string(),
                    "application/x-amz-json-1.1".to_string(),
                )],
                br#"{"__type":"ServerException","message":"injected by the test proxy"}"#.to_vec(),
            )
        } else {
            let mut req = http.request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{upstream}{path}"),
            );
            for (k, v) in &headers {
                if !matches!(
                    k.as_str(),
                    "host" | "connection" | "content-length" | "expect"
                ) {
                    req = req.header(k.as_str(), v.as_str());
                }
            }
            let resp = req.body(body).send().await.map_err(std::io::Error::other)?;
            let status = resp.status().as_u16();
            let hs: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "content-length" | "connection" | "transfer-encoding"
                    )
                })
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let bytes = resp.bytes().await.map_err(std::io::Error::other)?;
            (status, hs, bytes.to_vec())
        };
        calls.lock().unwrap().push(Call {
            operation,
            body: body_text,
            status,
        });
        let mut out = format!("HTTP/1.1 {status} X\r\n");
        for (k, v) in resp_headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "content-length: {}\r\nconnection: keep-alive\r\n\r\n",
            resp_body.len()
        ));
        w.write_all(out.as_bytes()).await?;
        w.write_all(&resp_body).await?;
    }
}

// ---------------------------------------------------------------------------
// moto's stream API

/// Reads the table's stream from moto (GetShardIterator + GetRecords, the
/// DynamoDB Streams API) and wraps new records as Lambda delivers them.
/// Plain HTTP: moto does not check signatures, and the workspace has no
/// DynamoDB Streams SDK.
pub struct StreamTap {
    http: reqwest::Client,
    moto: String,
    arn: String,
    after: HashMap<String, String>,
}

impl StreamTap {
    async fn call(&self, operation: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(&self.moto)
            .header("X-Amz-Target", format!("DynamoDBStreams_20120810.{operation}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDTESTONLY/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto stream API");
        let status = resp.status();
        let text = resp.text().await.expect("stream API body");
        assert!(status.is_success(), "{operation}: {status} {text}");
        serde_json::from_str(&text).expect("stream API JSON")
    }

    /// Every record since the last call, as `{"Records": [...]}`.
    pub async fn next_batch(&mut self) -> Value {
        let description = self
            .call("DescribeStream", json!({"StreamArn": self.arn}))
            .await;
        let shards: Vec<String> = description["StreamDescription"]["Shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|s| s["ShardId"].as_str().expect("shard id").to_string())
            .collect();
        let mut records = Vec::new();
        for shard in shards {
            let request = match self.after.get(&shard) {
                Some(seq) => json!({"StreamArn": self.arn, "ShardId": shard,
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq}),
                None => {
                    json!({"StreamArn": self.arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"})
                }
            };
            let mut iterator =
                self.call("GetShardIterator", request).await["ShardIterator"].clone();
            while let Some(it) = iterator.as_str().map(str::to_string) {
                let page = self
                    .call("GetRecords", json!({"ShardIterator": it, "Limit": 1000}))
                    .await;
                let got = page["Records"].as_array().cloned().unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                for mut r in got {
                    if let Some(seq) = r["dynamodb"]["SequenceNumber"].as_str() {
                        self.after.insert(shard.clone(), seq.to_string());
                    }
                    // What Lambda's event source mapping adds to each record.
                    r["eventSourceARN"] = json!(self.arn);
                    records.push(r);
                }
                iterator = page["NextShardIterator"].clone();
            }
        }
        json!({ "Records": records })
    }
}

// ---------------------------------------------------------------------------
// The stage

pub struct Stage {
    pub proxy: AwsProxy,
    pub stream: StreamTap,
    /// Between the proxy and moto when the stage checks policies as ECR
    /// does ([`Stage::checking_policies`]); moto itself takes any policy.
    pub front: Option<AwsFront>,
    pub moto: Moto,
}

pub async fn sdk_at(url: &str) -> SdkConfig {
    crate::common::moto_sdk(url, SECRET_KEY)
        .await
        .to_builder()
        // Failing tests stay quick; a 5xx is still retried once.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build()
}

impl Stage {
    pub async fn new() -> Stage {
        Self::start(false).await
    }

    /// The function's calls reach moto through the rig's AWS front, which
    /// refuses `SetRepositoryPolicy` as ECR does
    /// ([`AwsFront::check_policies_as_ecr`]).
    pub async fn checking_policies(refused_accounts: &[&str]) -> Stage {
        let stage = Self::start(true).await;
        stage
            .front
            .as_ref()
            .expect("front")
            .check_policies_as_ecr(refused_accounts);
        stage
    }

    async fn start(with_front: bool) -> Stage {
        let moto = Moto::start();
        let front =
            with_front.then(|| AwsFront::start_with(&moto.url(), AwsFrontOptions::default()));
        let upstream = front.as_ref().map_or_else(|| moto.url(), AwsFront::url);
        let proxy = AwsProxy::start(upstream).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_at(&moto.url()).await);
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        // Gen3's table: (user_id, bmh_workspace_id), several rows per user.
        let created = ddb
            .create_table()
            .table_name(TABLE)
            .key_schema(key("user_id", KeyType::Hash))
            .key_schema(key("bmh_workspace_id", KeyType::Range))
            .attribute_definitions(attr("user_id"))
            .attribute_definitions(attr("bmh_workspace_id"))
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create table");
        let arn = created
            .table_description()
            .and_then(|t| t.latest_stream_arn())
            .expect("stream ARN")
            .to_string();
        let stream = StreamTap {
            http: reqwest::Client::new(),
            moto: moto.url(),
            arn,
            after: HashMap::new(),
        };
        Stage {
            proxy,
            stream,
            front,
            moto,
        }
    }

    /// For the test's own setup and checks: straight to moto.
    pub async fn sdk(&self) -> SdkConfig {
        sdk_at(&self.moto.url()).await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk().await)
    }

    /// ECR in the repositories' account, as the function's role sees it.
    pub async fn ecr(&self) -> aws_sdk_ecr::Client {
        crate::common::ecr_as(&self.sdk().await, ROLE).await
    }

    pub fn env(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("TABLE_NAME", TABLE),
            ("ECR_REGION", REGION),
            ("ECR_ROLE_ARN", ROLE),
            ("ECR_ROLE_EXTERNAL_ID", "gen3-access-sync"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    /// The function under test, with its AWS calls going through the proxy.
    pub async fn sync(&self, extra: &[(&str, &str)]) -> (AccessSync, Config) {
        self.sync_through(&self.proxy, extra).await
    }

    /// The function under test behind another proxy.
    pub async fn sync_through(
        &self,
        proxy: &AwsProxy,
        extra: &[(&str, &str)],
    ) -> (AccessSync, Config) {
        let config = Config::from_env(&Self::env(extra)).expect("config");
        let sync = config.build_with(sdk_at(proxy.url()).await).await;
        (sync, config)
    }

    pub async fn put(&self, item: HashMap<String, AttributeValue>) {
        self.dynamodb()
            .await
            .put_item()
            .table_name(TABLE)
            .set_item(Some(item))
            .send()
            .await
            .expect("put_item");
    }

    pub async fn delete(&self, user: &str, ws: &str) {
        self.dynamodb()
            .await
            .delete_item()
            .table_name(TABLE)
            .key("user_id", s(user))
            .key("bmh_workspace_id", s(ws))
            .send()
            .await
            .expect("delete_item");
    }

    pub async fn create_repository(&self, name: &str) {
        self.ecr()
            .await
            .create_repository()
            .repository_name(name)
            .send()
            .await
            .expect("create_repository");
    }

    pub async fn set_policy(&self, repository: &str, text: &str) {
        self.ecr()
            .await
            .set_repository_policy()
            .repository_name(repository)
            .policy_text(text)
            .send()
            .await
            .expect("set_repository_policy");
    }

    /// The repository's policy, or `None` when it has none.
    pub async fn policy(&self, repository: &str) -> Option<Value> {
        match self
            .ecr()
            .await
            .get_repository_policy()
            .repository_name(repository)
            .send()
            .await
        {
            Ok(out) => {
                Some(serde_json::from_str(out.policy_text().expect("text")).expect("policy JSON"))
            }
            Err(e) => {
                let code = aws_sdk_ecr::error::ProvideErrorMetadata::code(&e).map(str::to_string);
                assert_eq!(
                    code.as_deref(),
                    Some("RepositoryPolicyNotFoundException"),
                    "{e:?}"
                );
                None
            }
        }
    }

    /// Accounts our statement grants (sorted), from the principals' ARNs.
    pub async fn granted(&self, repository: &str) -> Vec<String> {
        self.policy(repository)
            .await
            .map(|p| granted_by(&p))
            .unwrap_or_default()
    }

    pub async fn repository_exists(&self, name: &str) -> bool {
        self.ecr()
            .await
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
            .is_ok()
    }

    pub async fn next_batch(&mut self) -> Value {
        self.stream.next_batch().await
    }

    /// What the table grants `user`, computed here independently of the
    /// code under test: Direct Pay rows with a 12-digit string account.
    pub async fn desired(&self, user: &str) -> Vec<String> {
        let out = self
            .dynamodb()
            .await
            .query()
            .table_name(TABLE)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user))
            .consistent_read(true)
            .send()
            .await
            .expect("query");
        let set: BTreeSet<String> = out
            .items()
            .iter()
            .filter(|i| {
                i.get("workspace_type")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some("Direct Pay")
            })
            .filter_map(|i| i.get("account_id").and_then(|v| v.as_s().ok()).cloned())
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        set.into_iter().collect()
    }
}

/// Accounts in the `AllowCrossAccountPull` statement of a policy document.
pub fn granted_by(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Sid"] == "AllowCrossAccountPull")
        .flat_map(|s| match &s["Principal"]["AWS"] {
            Value::String(p) => vec![p.clone()],
            Value::Array(ps) => ps
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        })
        .map(|arn| {
            arn.trim_start_matches("arn:aws:iam::")
                .trim_end_matches(":root")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// A row as Gen3's table holds it.
pub fn row(user: &str, ws: &str, account: &str) -> HashMap<String, AttributeValue> {
    row_with(user, ws, Some(s(account)), "Direct Pay")
}

pub fn row_with(
    user: &str,
    ws: &str,
    account: Option<AttributeValue>,
    workspace_type: &str,
) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> = [
        ("user_id".to_string(), s(user)),
        ("bmh_workspace_id".to_string(), s(ws)),
        ("workspace_type".to_string(), s(workspace_type)),
        ("request_status".to_string(), s("active")),
    ]
    .into();
    if let Some(a) = account {
        item.insert("account_id".into(), a);
    }
    item
}

/// `nextflow-approved/<escaped user>`.
pub fn repo(user: &str) -> String {
    format!("{PREFIX}/{}", ecr_bridge::access::escape(user))
}

/// A sample event from `events/`.
pub fn sample(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("json")
}
