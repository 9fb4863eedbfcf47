//! The access-sync tests' own steps and checks: a batch or a full
//! reconcile handed to the handler as Lambda would (with its report, or
//! its EMF metrics), the reports of one user, foreign statements and
//! Gen3's policies, and a capture of the logs.

use access_sync::config::Config;
use access_sync::handler::{self, Handled};
use ecr_bridge_aws::access_sync::{AccessSync, BatchReport, ReconcileReport, RepositoryReport};
use serde_json::{json, Value};

use super::{repo, row, sample, AccessStage};
use crate::common::CapturedLogs;

pub const U1: &str = "user1@username.com";

/// Hands `payload` to the handler as Lambda would; a stream batch's answer
/// and the report behind it.
pub async fn stream_batch(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
) -> (Value, BatchReport) {
    match handler::handle_detailed(sync, config, payload)
        .await
        .expect("stream batches never fail")
    {
        h @ Handled::Stream { .. } => {
            let answer = h.to_json();
            let Handled::Stream { report, .. } = h else {
                unreachable!()
            };
            (answer, report)
        }
        other => panic!("expected a stream batch, got {other:?}"),
    }
}

/// A stage on which each of `users` has a repository, and the function
/// under test.
pub async fn stage_with_repositories(users: &[&str]) -> (AccessStage, AccessSync, Config) {
    let stage = AccessStage::new().await;
    for user in users {
        stage.create_repository(&repo(user)).await;
    }
    let (sync, config) = stage.sync(&[]).await;
    (stage, sync, config)
}

/// [`stage_with_repositories`] of [`U1`], who is then granted
/// 111111111111 by a first batch.
pub async fn stage_with_u1_granted() -> (AccessStage, AccessSync, Config) {
    let (mut stage, sync, config) = stage_with_repositories(&[U1]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    next(&mut stage, &sync, &config).await;
    (stage, sync, config)
}

/// The next stream batch, handed to the handler.
pub async fn next(
    stage: &mut AccessStage,
    sync: &AccessSync,
    config: &Config,
) -> (Value, BatchReport) {
    let batch = stage.next_batch().await;
    stream_batch(sync, config, batch).await
}

pub async fn full_reconcile(sync: &AccessSync, config: &Config) -> (Value, ReconcileReport) {
    match handler::handle_detailed(sync, config, sample("scheduled-reconcile.json"))
        .await
        .expect("reconcile")
    {
        h @ Handled::FullReconcile(_) => {
            let answer = h.to_json();
            let Handled::FullReconcile(r) = h else {
                unreachable!()
            };
            (answer, r)
        }
        other => panic!("expected a full reconcile, got {other:?}"),
    }
}

pub fn report_for<'a>(batch: &'a BatchReport, user: &str) -> &'a RepositoryReport {
    batch
        .reports
        .iter()
        .find(|r| r.users.iter().any(|u| u == user))
        .unwrap_or_else(|| panic!("no report for {user}: {:?}", batch.reports))
}

pub fn no_failures() -> Value {
    json!({"batchItemFailures": []})
}

pub const FOREIGN: &str = r#"{"Sid":"AllowCIPush","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:role/ci"},"Action":["ecr:InitiateLayerUpload","ecr:PutImage","ecr:UploadLayerPart","ecr:CompleteLayerUpload"]}"#;

pub fn foreign_statement() -> Value {
    serde_json::from_str(FOREIGN).unwrap()
}

pub fn foreign_of(policy: &Value) -> Vec<Value> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Sid"] != "AllowCrossAccountPull")
        .cloned()
        .collect()
}

/// A policy of the foreign statement alone.
pub fn foreign_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [foreign_statement()]}).to_string()
}

/// The first log line at `level` ("WARN", "ERROR", ...) that contains `text`.
pub fn log_line(logs: &CapturedLogs, level: &str, text: &str) -> Option<String> {
    let level = format!("\"{level}\"");
    logs.text()
        .lines()
        .find(|l| l.contains(&level) && l.contains(text))
        .map(str::to_string)
}

/// What Gen3's cronjob writes: the whole policy, version 2008-10-17, one
/// account, GetAuthorizationToken among the actions.
pub fn gen3_policy(account: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "Version": "2008-10-17",
        "Statement": [{
            "Sid": "AllowCrossAccountPull",
            "Effect": "Allow",
            "Principal": {"AWS": [format!("arn:aws:iam::{account}:root")]},
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetAuthorizationToken", "ecr:GetDownloadUrlForLayer"]
        }]
    }))
    .unwrap()
}

/// A capture of this test's JSON logs at `level` and above, through the
/// functions' own filter (the handler runs on the test's task, so a
/// thread-local subscriber sees it). Keep the guard for as long as wanted.
pub fn capture_logs(level: &str) -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(ecr_bridge_aws::logging::filter(level))
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Hands `payload` to the handler and returns its report and the EMF
/// document it would print.
pub async fn measured(sync: &AccessSync, config: &Config, payload: Value) -> (Handled, Value) {
    let (handled, metrics) = handler::handle_measured(sync, config, payload).await;
    (handled.expect("handled"), metrics.to_json())
}

pub async fn measured_batch(
    stage: &mut AccessStage,
    sync: &AccessSync,
    config: &Config,
) -> (BatchReport, Value) {
    let batch = stage.next_batch().await;
    match measured(sync, config, batch).await {
        (
            Handled::Stream {
                response, report, ..
            },
            metrics,
        ) => {
            assert!(response.batch_item_failures.is_empty(), "nothing to retry");
            (report, metrics)
        }
        (other, _) => panic!("expected a stream batch, got {other:?}"),
    }
}

pub async fn measured_reconcile(sync: &AccessSync, config: &Config) -> (ReconcileReport, Value) {
    match measured(sync, config, sample("scheduled-reconcile.json")).await {
        (Handled::FullReconcile(r), metrics) => (r, metrics),
        (other, _) => panic!("expected a full reconcile, got {other:?}"),
    }
}
