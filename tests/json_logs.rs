//! Both functions' log lines under Lambda's JSON log format
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`, what template.yaml deploys): every line
//! written during an invocation names it with a top-level `requestId`,
//! Lambda's own field. The real binaries run under the rig's Runtime API
//! stand-in, as in a Lambda container, with their stdout captured.

mod access_rig;
mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use access_rig::{row, AccessStage};
use common::events::{apps_mapping, push_event};
use common::push_image;
use common::stage::{Stage, REGION, SOURCE, TARGET};
use rig::ImageSpec;
use serde_json::{json, Value};

/// Runs `binary` with `env` for `events`, one invocation each, and returns
/// its stdout lines and the request ids the Runtime API handed out.
fn run_json(
    binary: &str,
    env: HashMap<String, String>,
    events: &[Value],
) -> (Vec<String>, Vec<String>) {
    let api = rig::RuntimeApi::start();
    let ids: Vec<String> = events
        .iter()
        .map(|e| api.invoke(e.to_string().as_bytes(), Duration::from_secs(120)))
        .collect();
    let child = Command::new(common::workspace_binary(binary))
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", api.host())
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_FUNCTION_NAME", binary)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_ACCESS_KEY_ID", "AKIDTESTONLY")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-key")
        .env("AWS_REGION", REGION)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the function");
    let results = api.wait_for(events.len(), Duration::from_secs(120));
    let mut child = child;
    let _ = child.kill();
    let out = child.wait_with_output().expect("function output");
    assert_eq!(
        results.len(),
        events.len(),
        "init errors: {:?}",
        api.init_errors()
    );
    for r in &results {
        assert!(r.ok, "invocation {} failed: {}", r.request_id, r.body);
    }
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (lines, ids)
}

/// Every line is JSON; from the first line that names an invocation on,
/// every line (log lines and EMF metric records alike) names one of `ids`,
/// and each id is named.
fn assert_every_invocation_line_has_its_request_id(lines: &[String], ids: &[String]) {
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let first = parsed
        .iter()
        .position(|l| l.get("requestId").is_some())
        .unwrap_or_else(|| panic!("no line names an invocation: {lines:#?}"));
    let logs = parsed[first..].iter().zip(&lines[first..]);
    for (line, raw) in logs {
        let id = line["requestId"].as_str();
        assert!(
            id.is_some_and(|id| ids.iter().any(|i| i == id)),
            "a line during an invocation without its request id: {raw}"
        );
    }
    for id in ids {
        let n = parsed
            .iter()
            .filter(|l| l["requestId"] == id.as_str())
            .count();
        assert!(n > 0, "no line names invocation {id}: {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_json_log_format_when_the_replicator_copies_two_pushes_then_every_line_of_each_invocation_carries_its_request_id(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET]).build();
    let image = push_image(stage.source(), &ImageSpec::single(&[20_000]), "app-a", "v1");
    rig::skopeo_copy(stage.source(), "app-a:v1", stage.source(), "app-b:v1").expect("source copy");
    let mapping = apps_mapping();
    let mut env = stage.replicator_env(&[("MAPPING_JSON", &mapping.to_string())]);
    env.insert("AWS_ENDPOINT_URL".into(), stage.aws_url());
    let events = [
        push_event("app-a", &image.layout.digest, "v1"),
        push_event("app-b", &image.layout.digest, "v1"),
    ];

    let (lines, ids) = run_json("image-replicator", env, &events);

    assert_every_invocation_line_has_its_request_id(&lines, &ids);
    let outcomes = lines.iter().filter(|l| l.contains("\"outcome\"")).count();
    assert!(outcomes >= 2, "an outcome line per invocation: {lines:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_json_log_format_when_access_sync_reconciles_a_user_then_every_line_of_the_invocation_carries_its_request_id(
) {
    let stage = AccessStage::new().await;
    stage.create_repository(&access_rig::repo("u1@x.io")).await;
    stage.put(row("u1@x.io", "ws-1", "444455556666")).await;
    let mut env = AccessStage::env(&[]);
    env.insert("AWS_ENDPOINT_URL".into(), stage.aws().url());
    let events = [
        json!({"reconcile": {"users": ["u1@x.io"]}}),
        json!({"reconcile": {"users": ["u2@x.io"]}}),
    ];

    let (lines, ids) = run_json("access-sync", env, &events);

    assert_every_invocation_line_has_its_request_id(&lines, &ids);
    assert_eq!(
        stage.granted(&access_rig::repo("u1@x.io")).await,
        ["444455556666"]
    );
}
