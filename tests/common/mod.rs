//! Glue between the rig (processes, images, skopeo) and the ecr-bridge library.
#![allow(dead_code)]

pub mod backfill;
pub mod events;
pub mod stage;

use std::path::PathBuf;
use std::sync::Arc;

use ecr_bridge::copy::{CopyError, CopyOptions, CopyReport, ImageCopier};
use ecr_bridge::reference::Selector;
use ecr_bridge::registry::{
    self, BasicCredentials, Endpoint, RegistryClient, Repository, RetryPolicy, StaticCredentials,
    Timeouts,
};
use rig::{build_layout, skopeo_push, FaultProxy, ImageSpec, Layout, Platform, Registry};

/// A client for a rig registry with its real credentials.
/// A size a scale test takes from the environment (`make scale` sets
/// larger ones), `default` when unset or not a number.
pub fn env_size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn client(reg: &Registry) -> RegistryClient {
    client_with(
        reg,
        Some(BasicCredentials::new(reg.user(), reg.password())),
        fast_retry(),
    )
}

pub fn client_with(
    reg: &Registry,
    creds: Option<BasicCredentials>,
    retry: RetryPolicy,
) -> RegistryClient {
    let timeouts = Timeouts::default();
    RegistryClient::new(
        registry::http_client(&timeouts).expect("http client"),
        Endpoint::parse(&reg.url(), true).expect("loopback endpoint"),
        Arc::new(StaticCredentials(creds)),
        retry,
        timeouts,
    )
}

/// Retries that keep failing tests quick.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(200),
        max_total_wait: std::time::Duration::from_secs(2),
        ..RetryPolicy::default()
    }
}

pub fn at(reg: &Registry, repository: &str) -> Repository {
    Repository::new(client(reg), repository)
}

pub fn tag(t: &str) -> Selector {
    Selector::Tag(t.to_string())
}

pub fn digest(d: &str) -> Selector {
    Selector::Digest(d.parse().expect("digest"))
}

pub fn tags(ts: &[&str]) -> Vec<String> {
    ts.iter().map(|t| t.to_string()).collect()
}

pub async fn copy(
    from: &Repository,
    selector: &Selector,
    to: &Repository,
    with_tags: &[&str],
) -> Result<CopyReport, CopyError> {
    ImageCopier::new(CopyOptions::default())
        .copy(from, selector, to, &tags(with_tags))
        .await
}

/// A test image built on disk and pushed by skopeo. Keep the guard alive as
/// long as the layout is used.
pub struct Pushed {
    pub layout: Layout,
    _dir: tempfile::TempDir,
}

pub fn push_image(reg: &Registry, spec: &ImageSpec, repo: &str, tag: &str) -> Pushed {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = build_layout(dir.path(), tag, spec);
    skopeo_push(&layout, reg, &format!("{repo}:{tag}"));
    Pushed { layout, _dir: dir }
}

/// The `ecr-bridge` binary built next to the test executable.
pub fn cli_binary() -> PathBuf {
    workspace_binary("ecr-bridge")
}

/// A binary of the workspace built next to the test executable: a
/// function's `bootstrap` as Lambda runs it (`image-replicator`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (make test does)",
        bin.display()
    );
    bin
}

/// Blob uploads the registry received (a PUT completing an upload session).
pub fn blob_puts(records: &[rig::RequestRecord]) -> usize {
    records
        .iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/blobs/uploads/"))
        .count()
}

/// Chunked-upload PATCHes the registry received: the engine must never send one.
pub fn patches(records: &[rig::RequestRecord]) -> usize {
    records.iter().filter(|r| r.method == "PATCH").count()
}

/// The SDK configuration of a test: moto's endpoint, static credentials
/// (moto's default account 123456789012), us-east-1.
pub async fn moto_sdk(moto_url: &str, secret_key: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTESTONLY",
            secret_key,
            None,
            None,
            "test",
        ))
        .load()
        .await
}

/// An ECR client acting through `role_arn`, as a function's assumed role would
/// (moto scopes the credentials to the role's account).
pub async fn ecr_as(sdk: &aws_config::SdkConfig, role_arn: &str) -> aws_sdk_ecr::Client {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name("test-oracle")
        .configure(sdk)
        .build()
        .await;
    let conf = sdk
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build();
    aws_sdk_ecr::Client::new(&conf)
}

/// Installs the functions' own log filter, asked for everything
/// (`RUST_LOG=trace`), writing JSON lines into the returned capture. nextest
/// runs each test in its own process, so this global subscriber sees every
/// thread of the test. Call once per test.
pub fn capture_all_logs() -> CapturedLogs {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(ecr_bridge_aws::logging::filter("trace"))
        .with_writer(move || writer.clone())
        .init();
    captured
}

/// Keeps every log line a test process writes, for checks on what was logged.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A client for any registry URL (a fault proxy in front of a rig registry,
/// say) with its own credential source and retry policy.
pub fn client_via(
    url: &str,
    credentials: Arc<dyn registry::CredentialSource>,
    retry: RetryPolicy,
) -> RegistryClient {
    let timeouts = Timeouts::default();
    RegistryClient::new(
        registry::http_client(&timeouts).expect("http client"),
        Endpoint::parse(url, true).expect("loopback endpoint"),
        credentials,
        retry,
        timeouts,
    )
}

/// A repository behind a front (a fault proxy), reached with the
/// registry's real credentials (the front passes them on).
pub fn via(front: &FaultProxy, reg: &Registry, repo: &str, retry: RetryPolicy) -> Repository {
    let creds = Arc::new(StaticCredentials(Some(BasicCredentials::new(
        reg.user(),
        reg.password(),
    ))));
    Repository::new(client_via(&front.url(), creds, retry), repo)
}

/// Short backoffs, enough attempts to ride out a few percent of faults.
pub fn fault_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        initial_backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(100),
        max_total_wait: std::time::Duration::from_secs(3),
        ..RetryPolicy::default()
    }
}

/// The three platforms of the multi-arch test images.
pub fn platforms() -> Vec<Platform> {
    vec![
        Platform::new("linux", "amd64"),
        Platform::new("linux", "arm64"),
        Platform::new("linux", "s390x"),
    ]
}

/// A 3-platform index, three layers of 64–512 KiB each, the first shared:
/// 10 blobs (7 layers, 3 configs), about 2 MB.
pub fn multi_arch_spec() -> ImageSpec {
    ImageSpec::multi_arch(&platforms(), &[400 << 10, 200 << 10, 64 << 10], 1)
}

/// An SQS queue named `name` in the account `sdk` acts in (moto); its URL.
pub async fn create_queue(sdk: &aws_config::SdkConfig, name: &str) -> String {
    aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue {name} in moto: {e:?}"))
        .queue_url()
        .expect("queue url")
        .to_string()
}
