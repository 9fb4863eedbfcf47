//! The access-sync function, end to end against moto: the users table (with
//! its `NEW_AND_OLD_IMAGES` stream) in moto's default account, the
//! repositories in 222222222222 reached through AssumeRole. Stream batches
//! are read from moto's stream API, so records have the real shape; every
//! AWS call the function makes passes through a logging proxy, so "no
//! write" and "calls per user" are what moto was asked, not what the code
//! says it did.

mod access_rig;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use access_rig::{granted_by, repo, row, row_with, s, sample, Stage, PREFIX, SECRET_KEY};
use access_sync::config::Config;
use access_sync::handler::{self, Handled, HandlerError};
use aws_sdk_dynamodb::types::AttributeValue;
use ecr_bridge_aws::access_sync::{
    AccessSync, BatchReport, Outcome, ReconcileReport, RepositoryReport,
};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const U1: &str = "user1@username.com";

/// Hands `payload` to the handler as Lambda would; a stream batch's answer
/// and the report behind it.
async fn stream_batch(sync: &AccessSync, config: &Config, payload: Value) -> (Value, BatchReport) {
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

async fn next(stage: &mut Stage, sync: &AccessSync, config: &Config) -> (Value, BatchReport) {
    let batch = stage.next_batch().await;
    stream_batch(sync, config, batch).await
}

async fn full_reconcile(sync: &AccessSync, config: &Config) -> (Value, ReconcileReport) {
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

fn report_for<'a>(batch: &'a BatchReport, user: &str) -> &'a RepositoryReport {
    batch
        .reports
        .iter()
        .find(|r| r.users.iter().any(|u| u == user))
        .unwrap_or_else(|| panic!("no report for {user}: {:?}", batch.reports))
}

fn no_failures() -> Value {
    json!({"batchItemFailures": []})
}

const FOREIGN: &str = r#"{"Sid":"AllowCIPush","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:role/ci"},"Action":["ecr:InitiateLayerUpload","ecr:PutImage","ecr:UploadLayerPart","ecr:CompleteLayerUpload"]}"#;

fn foreign_statement() -> Value {
    serde_json::from_str(FOREIGN).unwrap()
}

fn foreign_of(policy: &Value) -> Vec<Value> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Sid"] != "AllowCrossAccountPull")
        .cloned()
        .collect()
}

/// What Gen3's cronjob writes: the whole policy, version 2008-10-17, one
/// account, GetAuthorizationToken among the actions.
fn gen3_policy(account: &str) -> String {
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

#[tokio::test(flavor = "multi_thread")]
async fn given_a_new_direct_pay_row_when_its_insert_is_handled_then_the_account_is_granted_pull() {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;

    let batch = stage.next_batch().await;
    // What moto's stream API gave is the shape Lambda's types expect.
    let typed: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(batch.clone()).expect("Lambda's DynamoDB event shape");
    assert_eq!(typed.records.len(), 1);
    assert_eq!(typed.records[0].event_name, "INSERT");
    assert!(typed.records[0].change.sequence_number.is_some());
    let (answer, report) = stream_batch(&sync, &config, batch).await;

    assert_eq!(answer, no_failures());
    let policy = stage.policy(&repo(U1)).await.expect("a policy");
    assert_eq!(policy["Version"], "2012-10-17");
    assert_eq!(
        policy["Statement"],
        json!([{
            "Sid": "AllowCrossAccountPull",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::111111111111:root"]},
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        }])
    );
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::Granted);
    assert_eq!(r.accounts_added, ["111111111111"]);
    assert_eq!(
        r.repository.as_deref(),
        Some("nextflow-approved/user1-40username-2ecom")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_second_row_of_the_same_user_with_another_account_when_handled_then_both_accounts_are_granted(
) {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    next(&mut stage, &sync, &config).await;

    stage.put(row(U1, "ws-2", "333333333333")).await;
    let (answer, report) = next(&mut stage, &sync, &config).await;

    assert_eq!(answer, no_failures());
    assert_eq!(
        stage.granted(&repo(U1)).await,
        ["111111111111", "333333333333"]
    );
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::Changed);
    assert_eq!(r.accounts_added, ["333333333333"]);
    assert!(r.accounts_removed.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_row_modified_to_another_account_when_handled_then_the_old_account_is_revoked() {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    next(&mut stage, &sync, &config).await;

    stage.put(row(U1, "ws-1", "444444444444")).await;
    let batch = stage.next_batch().await;
    assert_eq!(batch["Records"][0]["eventName"], "MODIFY");
    assert_eq!(
        batch["Records"][0]["dynamodb"]["OldImage"]["account_id"]["S"],
        "111111111111"
    );
    let (answer, report) = stream_batch(&sync, &config, batch).await;

    assert_eq!(answer, no_failures());
    assert_eq!(stage.granted(&repo(U1)).await, ["444444444444"]);
    let r = report_for(&report, U1);
    assert_eq!(
        (r.accounts_added.as_slice(), r.accounts_removed.as_slice()),
        (
            &["444444444444".to_string()][..],
            &["111111111111".to_string()][..]
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_row_modified_away_from_direct_pay_when_handled_then_access_is_revoked() {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    next(&mut stage, &sync, &config).await;

    stage
        .put(row_with(
            U1,
            "ws-1",
            Some(s("111111111111")),
            "STRIDES Credits",
        ))
        .await;
    let (answer, report) = next(&mut stage, &sync, &config).await;

    assert_eq!(answer, no_failures());
    assert_eq!(
        stage.policy(&repo(U1)).await,
        None,
        "our statement was the only one: no policy left"
    );
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::Revoked);
    assert_eq!(r.accounts_removed, ["111111111111"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_last_row_removed_when_handled_then_access_is_revoked_and_the_empty_policy_deleted(
) {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    next(&mut stage, &sync, &config).await;
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);

    stage.delete(U1, "ws-1").await;
    let batch = stage.next_batch().await;
    assert_eq!(batch["Records"][0]["eventName"], "REMOVE");
    let mark = stage.proxy.mark();
    let (answer, report) = stream_batch(&sync, &config, batch).await;

    assert_eq!(answer, no_failures());
    assert_eq!(stage.policy(&repo(U1)).await, None);
    assert_eq!(stage.proxy.count_since(mark, "DeleteRepositoryPolicy"), 1);
    assert_eq!(
        stage.proxy.count_since(mark, "SetRepositoryPolicy"),
        0,
        "never an empty Statement list"
    );
    assert_eq!(report_for(&report, U1).outcome, Outcome::Revoked);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_foreign_statement_when_access_is_granted_widened_changed_and_revoked_then_it_survives_every_change(
) {
    let mut stage = Stage::new().await;
    let repository = repo(U1);
    stage.create_repository(&repository).await;
    stage
        .set_policy(
            &repository,
            &json!({"Version": "2012-10-17", "Statement": [foreign_statement()]}).to_string(),
        )
        .await;
    let (sync, config) = stage.sync(&[]).await;

    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("insert", vec!["111111111111"]),
        ("second row", vec!["111111111111", "333333333333"]),
        ("modify", vec!["333333333333", "444444444444"]),
        ("remove one", vec!["444444444444"]),
        ("remove all", vec![]),
    ];
    for (step, expected) in steps {
        match step {
            "insert" => stage.put(row(U1, "ws-1", "111111111111")).await,
            "second row" => stage.put(row(U1, "ws-2", "333333333333")).await,
            "modify" => stage.put(row(U1, "ws-1", "444444444444")).await,
            "remove one" => stage.delete(U1, "ws-2").await,
            _ => stage.delete(U1, "ws-1").await,
        }
        let (answer, _) = next(&mut stage, &sync, &config).await;
        assert_eq!(answer, no_failures(), "{step}");
        let policy = stage
            .policy(&repository)
            .await
            .unwrap_or_else(|| panic!("{step}: the policy must stay"));
        assert_eq!(
            foreign_of(&policy),
            [foreign_statement()],
            "{step}: the foreign statement is untouched"
        );
        assert_eq!(granted_by(&policy), expected, "{step}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn given_changes_that_do_not_touch_access_when_handled_then_zero_writes_and_only_reads() {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    next(&mut stage, &sync, &config).await;

    // A MODIFY of an unrelated attribute, a row of another workspace type, a row rewritten as it was.
    let mut touched = row(U1, "ws-1", "111111111111");
    touched.insert("last_login".into(), s("2026-11-23T10:00:00Z"));
    stage.put(touched).await;
    stage
        .put(row_with(U1, "ws-9", Some(s("555555555555")), "Trial"))
        .await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    let batch = stage.next_batch().await;
    assert_eq!(batch["Records"].as_array().unwrap().len(), 3);
    for _replay in 0..2 {
        let mark = stage.proxy.mark();
        let (answer, report) = stream_batch(&sync, &config, batch.clone()).await;

        assert_eq!(answer, no_failures());
        assert_eq!(report.calls.writes(), 0);
        let calls = stage.proxy.calls_since(mark);
        let ops: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
        assert_eq!(
            ops,
            ["Query", "Query", "GetRepositoryPolicy"],
            "a Query per user id the name stands for, one policy read, nothing else"
        );
        // `user1-40username-2ecom` is also the escape of `user1@username\u{2EC}om`:
        // its rows are read too, to rule out a collision.
        for user in [U1, "user1@username\u{2EC}om"] {
            assert!(
                calls.iter().any(|c| c.body.contains(user)),
                "a Query for {user:?}"
            );
        }
        assert_eq!(
            report.calls.total() as usize,
            calls.len(),
            "the use case counts what moto saw"
        );
        assert_eq!(report_for(&report, U1).outcome, Outcome::Unchanged);
    }
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_rows_with_invalid_account_ids_when_handled_then_they_are_skipped_with_a_warning_naming_the_row_and_the_rest_granted(
) {
    let captured = common::CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(ecr_bridge_aws::logging::filter("debug"))
        .with_writer(move || writer.clone())
        .finish();
    // The handler runs on this test's task: a thread-local subscriber sees it.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-good", "111111111111")).await;
    stage.put(row(U1, "ws-short", "12345")).await;
    stage
        .put(row_with(
            U1,
            "ws-number",
            Some(AttributeValue::N("33333333333".into())),
            "Direct Pay",
        ))
        .await;
    stage
        .put(row_with(
            U1,
            "ws-bool",
            Some(AttributeValue::Bool(true)),
            "Direct Pay",
        ))
        .await;
    stage.put(row_with(U1, "ws-none", None, "Direct Pay")).await;

    let (answer, report) = next(&mut stage, &sync, &config).await;

    assert_eq!(answer, no_failures(), "bad rows are not retried");
    // The number lost its leading zero in the table and gets it back.
    assert_eq!(
        stage.granted(&repo(U1)).await,
        ["033333333333", "111111111111"]
    );
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::Granted);
    assert_eq!(r.skipped_rows.len(), 3, "{:?}", r.skipped_rows);
    let logs = captured.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("row skipped"))
        .collect();
    assert_eq!(warnings.len(), 3, "{logs}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ws-short") && w.contains("12345")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ws-bool") && w.contains("BOOL")),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.contains(U1)), "{warnings:?}");
    let outcome = logs
        .lines()
        .find(|l| l.contains("access reconciled"))
        .expect("the outcome line");
    for field in [
        "\"user_id\"",
        "\"repository\"",
        "\"accounts_added\"",
        "\"accounts_removed\"",
        "\"outcome\":\"granted\"",
    ] {
        assert!(outcome.contains(field), "{field} in {outcome}");
    }
    assert!(!logs.contains(SECRET_KEY), "no credential in the logs");
    assert!(
        !logs.contains("FQoGZXIvYXdzE"),
        "no session token in the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_user_whose_escaped_name_is_not_a_valid_ecr_name_when_handled_then_reported_not_retried_and_the_batch_goes_on(
) {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row("User@x.org", "ws-1", "111111111111")).await;
    stage.put(row(U1, "ws-1", "222222222222")).await;
    let mark = stage.proxy.mark();

    let (answer, report) = next(&mut stage, &sync, &config).await;

    assert_eq!(
        answer,
        no_failures(),
        "a permanent error is not handed back to Lambda"
    );
    let bad = report_for(&report, "User@x.org");
    assert_eq!(bad.outcome, Outcome::Failed);
    let error = bad.error.as_ref().unwrap();
    assert_eq!(error.kind(), "invalid_name");
    assert!(!error.is_retryable());
    assert!(
        error
            .to_string()
            .contains("nextflow-approved/-55ser-40x-2eorg"),
        "{error}"
    );
    assert_eq!(
        bad.calls.total(),
        0,
        "no AWS call for a name that cannot exist"
    );
    assert!(stage
        .proxy
        .calls_since(mark)
        .iter()
        .all(|c| !c.body.contains("-55ser")));
    assert_eq!(report_for(&report, U1).outcome, Outcome::Granted);
    assert_eq!(report.tally.failed, 1);
    assert_eq!(report.tally.failed_transient, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_missing_repository_when_skip_then_counted_and_nothing_created_and_when_create_then_created_and_granted(
) {
    let mut stage = Stage::new().await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    // A user without access and without a repository: nothing to create.
    stage
        .put(row_with(
            "idle@x.io",
            "ws-1",
            Some(s("333333333333")),
            "Trial",
        ))
        .await;
    let batch = stage.next_batch().await;

    let (sync, config) = stage.sync(&[]).await;
    let (answer, report) = stream_batch(&sync, &config, batch.clone()).await;
    assert_eq!(
        answer,
        no_failures(),
        "skipped, not retried: the next full reconcile picks it up"
    );
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::RepositoryMissing);
    assert_eq!(r.accounts, ["111111111111"]);
    assert_eq!(report.tally.missing, 1);
    assert!(!stage.repository_exists(&repo(U1)).await);

    let (sync, config) = stage.sync(&[("MISSING_REPOSITORY", "create")]).await;
    let (answer, report) = stream_batch(&sync, &config, batch).await;
    assert_eq!(answer, no_failures());
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::Granted);
    assert!(r.created_repository);
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);
    assert_eq!(report_for(&report, "idle@x.io").outcome, Outcome::Unchanged);
    assert!(!stage.repository_exists(&repo("idle@x.io")).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_mixed_sample_batch_and_a_5xx_for_one_user_when_handled_then_only_that_users_records_are_in_batch_item_failures(
) {
    let stage = Stage::new().await;
    let (fl, jane) = ("first_last@uchicago.edu", "jane-doe@x.io");
    for user in [U1, fl, jane] {
        stage.create_repository(&repo(user)).await;
    }
    // The table as it is after the batch's changes (the handler reads the table, not the records).
    let mut above_limit = row(U1, "ws-0001", "111111111111");
    above_limit.insert("request_status".into(), s("above limit"));
    stage.put(above_limit).await;
    stage.put(row(U1, "ws-0002", "222222222222")).await;
    stage.put(row(fl, "ws-0100", "444444444444")).await;
    stage
        .put(row("User@x.org", "ws-0200", "555555555555"))
        .await;
    stage
        .set_policy(&repo(jane), &gen3_policy("666666666666"))
        .await;
    let (sync, config) = stage.sync(&[]).await;
    // ECR answers 500 to every read of first_last's policy: moto cannot
    // fail on demand, so the proxy in front of it answers instead, as an
    // overloaded ECR would (the SDK retries once, then gives up).
    stage
        .proxy
        .fail("GetRepositoryPolicy", "first-5flast-40uchicago-2eedu");
    let batch = sample("dynamodb-batch-mixed.json");

    let (answer, report) = stream_batch(&sync, &config, batch.clone()).await;

    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "4421584800000000017450440002"}]}),
        "only first_last's record: not the invalid name, not the malformed records, not the users that succeeded"
    );
    let failed = report_for(&report, fl);
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.is_retryable_failure(), "{:?}", failed.error);
    assert_eq!(
        stage.granted(&repo(U1)).await,
        ["111111111111", "222222222222"]
    );
    assert_eq!(
        stage.policy(&repo(jane)).await,
        None,
        "jane's row is gone: revoked"
    );
    assert_eq!(
        report_for(&report, "User@x.org")
            .error
            .as_ref()
            .unwrap()
            .kind(),
        "invalid_name"
    );
    assert_eq!((report.tally.failed, report.tally.failed_transient), (2, 1));
    assert_eq!(report.reports.len(), 4, "one reconcile per distinct user");
    assert_eq!(stage.granted(&repo(fl)).await, Vec::<String>::new());

    // Lambda retries from the reported record; ECR has recovered.
    stage.proxy.heal();
    let mut retry = batch.clone();
    retry["Records"] = json!(batch["Records"].as_array().unwrap()[1..].to_vec());
    let (answer, _) = stream_batch(&sync, &config, retry).await;
    assert_eq!(answer, no_failures());
    assert_eq!(stage.granted(&repo(fl)).await, ["444444444444"]);

    // And a payload that is no event at all is a permanent error of the invocation.
    let e = handler::handle(&sync, &config, json!([1, 2]))
        .await
        .unwrap_err();
    assert!(matches!(e, HandlerError::InvalidEvent(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_sample_insert_modify_and_remove_events_when_handled_against_the_table_then_grant_move_and_revoke(
) {
    let stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;

    stage.put(row(U1, "ws-0001", "111111111111")).await;
    let (answer, _) = stream_batch(&sync, &config, sample("dynamodb-insert.json")).await;
    assert_eq!(answer, no_failures());
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);

    stage.put(row(U1, "ws-0001", "333333333333")).await;
    stream_batch(&sync, &config, sample("dynamodb-modify.json")).await;
    assert_eq!(stage.granted(&repo(U1)).await, ["333333333333"]);

    stage.delete(U1, "ws-0001").await;
    stream_batch(&sync, &config, sample("dynamodb-remove.json")).await;
    assert_eq!(stage.policy(&repo(U1)).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_table_over_several_scan_pages_and_orphan_repositories_when_fully_reconciled_then_every_user_matches_and_orphans_are_revoked(
) {
    let stage = Stage::new().await;
    let users: Vec<String> = (0..12).map(|i| format!("u{i:02}@x.io")).collect();
    for (i, user) in users.iter().enumerate() {
        // 1-3 rows each, some of another workspace type: users straddle page boundaries.
        for w in 0..(i % 3 + 1) {
            let account = format!("{:012}", 100_000_000_000u64 + (i * 10 + w) as u64);
            let kind = if (i + w) % 4 == 3 {
                "Trial"
            } else {
                "Direct Pay"
            };
            stage
                .put(row_with(user, &format!("ws-{w}"), Some(s(&account)), kind))
                .await;
        }
        if i < 10 {
            stage.create_repository(&repo(user)).await;
        }
    }
    // Orphans: their users have no row any more.
    let gone = format!("{PREFIX}/gone-40x-2eio");
    let shared = format!("{PREFIX}/shared-40x-2eio");
    let bare = format!("{PREFIX}/bare-40x-2eio");
    let elsewhere = "other-team/gone-40x-2eio";
    for r in [&gone, &shared, &bare, &elsewhere.to_string()] {
        stage.create_repository(r).await;
    }
    stage.set_policy(&gone, &gen3_policy("777777777777")).await;
    let mut with_foreign: Value = serde_json::from_str(&gen3_policy("888888888888")).unwrap();
    with_foreign["Statement"]
        .as_array_mut()
        .unwrap()
        .push(foreign_statement());
    stage.set_policy(&shared, &with_foreign.to_string()).await;
    stage
        .set_policy(elsewhere, &gen3_policy("777777777777"))
        .await;
    let (sync, config) = stage.sync(&[("SCAN_PAGE_SIZE", "4")]).await;
    let mark = stage.proxy.mark();

    let (answer, report) = full_reconcile(&sync, &config).await;
    println!("full reconcile answered {answer}");

    let rows = (0..12).map(|i| i % 3 + 1).sum::<usize>();
    assert_eq!(report.rows, rows);
    assert!(
        report.scan_pages as usize >= rows / 4,
        "{} pages",
        report.scan_pages
    );
    assert_eq!(
        stage.proxy.count_since(mark, "Scan"),
        report.scan_pages as usize
    );
    assert_eq!(report.users, 12);
    for user in &users[..10] {
        assert_eq!(
            stage.granted(&repo(user)).await,
            stage.desired(user).await,
            "{user}"
        );
    }
    assert!(
        !stage.repository_exists(&repo(&users[10])).await,
        "MISSING_REPOSITORY=skip creates nothing"
    );
    assert_eq!(
        stage.policy(&gone).await,
        None,
        "orphan with only our statement: policy deleted"
    );
    let shared_policy = stage
        .policy(&shared)
        .await
        .expect("the foreign statement keeps the policy");
    assert_eq!(shared_policy["Statement"], json!([foreign_statement()]));
    assert_eq!(stage.policy(&bare).await, None);
    assert_eq!(
        granted_by(&stage.policy(elsewhere).await.unwrap()),
        ["777777777777"],
        "outside the prefix: not ours"
    );
    assert_eq!((report.repositories, report.orphans), (13, 3));
    assert_eq!(report.tally.revoked, 2);
    assert_eq!(report.tally.failed, 0);
    assert_eq!(report.tally.missing, 2);
    for key in [
        "granted",
        "changed",
        "revoked",
        "unchanged",
        "failed",
        "missing",
        "scan_pages",
        "calls",
    ] {
        assert!(answer.get(key).is_some(), "{key} in {answer}");
    }

    // Once in line, a second pass writes nothing.
    let mark = stage.proxy.mark();
    let (_, again) = full_reconcile(&sync, &config).await;
    assert_eq!(again.calls.writes(), 0);
    assert_eq!(
        stage.proxy.count_since(mark, "SetRepositoryPolicy")
            + stage.proxy.count_since(mark, "DeleteRepositoryPolicy"),
        0
    );
    assert_eq!(
        again.tally.granted + again.tally.changed + again.tally.revoked,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_policies_written_by_gen3s_cronjob_when_fully_reconciled_then_they_are_taken_over_with_every_account_and_nothing_more(
) {
    let mut stage = Stage::new().await;
    let departed = "departed@x.io";
    for user in [U1, departed] {
        stage.create_repository(&repo(user)).await;
    }
    // Two Direct Pay rows: Gen3 granted only the last one it scanned.
    stage.put(row(U1, "ws-1", "111111111111")).await;
    stage.put(row(U1, "ws-2", "333333333333")).await;
    stage
        .set_policy(&repo(U1), &gen3_policy("333333333333"))
        .await;
    // Gen3 never revoked: this user left Direct Pay long ago.
    stage
        .put(row_with(
            departed,
            "ws-1",
            Some(s("444444444444")),
            "STRIDES Credits",
        ))
        .await;
    stage
        .set_policy(&repo(departed), &gen3_policy("444444444444"))
        .await;
    let (sync, config) = stage.sync(&[]).await;
    stage.next_batch().await; // rows that predate the function: only the reconcile sees them

    let (_, report) = full_reconcile(&sync, &config).await;

    let policy = stage.policy(&repo(U1)).await.unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    assert_eq!(granted_by(&policy), ["111111111111", "333333333333"]);
    assert_eq!(
        policy["Statement"][0]["Action"],
        json!([
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer"
        ])
    );
    assert_eq!(stage.policy(&repo(departed)).await, None);
    assert_eq!((report.tally.changed, report.tally.revoked), (1, 1));

    // From then on the stream finds nothing to do for an unrelated change.
    let mut touched = row(U1, "ws-1", "111111111111");
    touched.insert("last_login".into(), s("now"));
    stage.put(touched).await;
    let (_, batch) = next(&mut stage, &sync, &config).await;
    assert_eq!(batch.calls.writes(), 0);
    // An operator can re-check chosen users by hand.
    let answer = handler::handle(
        &sync,
        &config,
        json!({"reconcile": {"users": [U1, departed]}}),
    )
    .await
    .unwrap();
    assert_eq!(
        (answer["users"].as_u64(), answer["unchanged"].as_u64()),
        (Some(2), Some(2)),
        "{answer}"
    );
}

/// The stream handler and the full reconcile race on one user's repository
/// while the user's rows change. Whatever the interleaving, once both are
/// done the policy must grant exactly what the table says.
#[tokio::test(flavor = "multi_thread")]
async fn given_the_stream_and_a_full_reconcile_racing_on_one_user_when_rows_change_then_the_policy_always_ends_equal_to_the_table(
) {
    let rounds: usize = std::env::var("ACCESS_SYNC_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("ACCESS_SYNC_RACE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261123);
    let mut stage = Stage::new().await;
    let user = "racer@x.io";
    let repository = repo(user);
    stage.create_repository(&repository).await;
    for other in ["a@x.io", "b@x.io"] {
        stage.create_repository(&repo(other)).await;
        stage.put(row(other, "ws-1", "999999999999")).await;
    }
    stage
        .set_policy(
            &repository,
            &json!({"Version": "2012-10-17", "Statement": [foreign_statement()]}).to_string(),
        )
        .await;
    // Two function instances, as two Lambda invocations would be; the
    // reconcile's reads of the policy are slowed by a random amount each
    // round, so the stream often writes between the reconcile's reading of
    // the table and its write (the interleaving that needs the re-check).
    let (stream_fn, stream_config) = stage.sync(&[]).await;
    let slow = access_rig::AwsProxy::start(stage.moto.url()).await;
    let (reconcile_fn, reconcile_config) = stage.sync_through(&slow, &[]).await;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let accounts = ["111111111111", "333333333333", "444444444444"];
    let started = Instant::now();
    let mut rewrites = 0u32;
    // What the test wrote: per workspace row, (account index, Direct Pay?).
    let mut rows: [Option<(usize, bool)>; 3] = [None; 3];
    let desired_of = |rows: &[Option<(usize, bool)>; 3]| -> BTreeSet<usize> {
        rows.iter()
            .flatten()
            .filter(|(_, dp)| *dp)
            .map(|(a, _)| *a)
            .collect()
    };

    for round in 0..rounds {
        // 1-2 changes that each change what the user should have, each
        // followed by the stream batch carrying it; the reconcile starts at a
        // random moment in between.
        let mut changes: Vec<(usize, Option<(usize, bool)>)> = Vec::new();
        for _ in 0..rng.random_range(1..=2) {
            let before = desired_of(&rows);
            loop {
                let ws = rng.random_range(0..3);
                let change = if rng.random_bool(0.25) {
                    None
                } else {
                    Some((rng.random_range(0..3), rng.random_bool(0.8)))
                };
                let mut after = rows;
                after[ws] = change;
                if desired_of(&after) != before {
                    rows = after;
                    changes.push((ws, change));
                    break;
                }
            }
        }
        let lead = Duration::from_millis(rng.random_range(0..20));
        let delay = Duration::from_millis(rng.random_range(0..10));
        slow.delay(
            "GetRepositoryPolicy",
            Duration::from_millis(rng.random_range(10..80)),
        );
        let tap = &mut stage.stream;
        let table = stage.moto.url();
        let stream_side = async {
            let ddb = aws_sdk_dynamodb::Client::new(&access_rig::sdk_at(&table).await);
            let mut reports = Vec::new();
            tokio::time::sleep(lead).await;
            for (ws, change) in &changes {
                let ws = format!("ws-{ws}");
                match change {
                    Some((a, direct_pay)) => {
                        let kind = if *direct_pay { "Direct Pay" } else { "Trial" };
                        ddb.put_item()
                            .table_name(access_rig::TABLE)
                            .set_item(Some(row_with(user, &ws, Some(s(accounts[*a])), kind)))
                            .send()
                            .await
                            .unwrap();
                    }
                    None => {
                        ddb.delete_item()
                            .table_name(access_rig::TABLE)
                            .key("user_id", s(user))
                            .key("bmh_workspace_id", s(&ws))
                            .send()
                            .await
                            .unwrap();
                    }
                }
                let batch = tap.next_batch().await;
                let (answer, report) = stream_batch(&stream_fn, &stream_config, batch).await;
                assert_eq!(answer, no_failures(), "round {round}");
                reports.push(report);
            }
            reports
        };
        let reconcile_side = async {
            tokio::time::sleep(delay).await;
            full_reconcile(&reconcile_fn, &reconcile_config).await.1
        };
        let (stream_reports, reconciled) = tokio::join!(stream_side, reconcile_side);

        let all: Vec<&RepositoryReport> = stream_reports
            .iter()
            .flat_map(|b| b.reports.iter())
            .chain(reconciled.reports.iter())
            .filter(|r| r.repository.as_deref() == Some(repository.as_str()))
            .collect();
        assert!(
            all.iter().all(|r| r.error.is_none()),
            "round {round}: {all:?}"
        );
        rewrites += all.iter().map(|r| r.writes.saturating_sub(1)).sum::<u32>();
        let desired = stage.desired(user).await;
        let policy = stage
            .policy(&repository)
            .await
            .expect("the foreign statement keeps the policy");
        assert_eq!(
            granted_by(&policy),
            desired,
            "round {round} (seed {seed}): policy {policy}"
        );
        assert_eq!(foreign_of(&policy), [foreign_statement()], "round {round}");
    }
    println!(
        "race: {rounds} rounds (seed {seed}) in {:.1}s; policy equal to the table after every round; {rewrites} extra writes by the re-check after a write",
        started.elapsed().as_secs_f64()
    );
    assert!(rounds >= 1);
}

/// Issue 7's figure: AWS calls per distinct user for a batch of 1,000
/// records over 100 users, counted by the proxy (what moto received).
#[tokio::test(flavor = "multi_thread")]
async fn given_batches_of_1000_records_over_100_users_when_handled_then_calls_per_user_are_bounded_and_a_batch_that_changes_nothing_writes_nothing(
) {
    let mut stage = Stage::new().await;
    let users: Vec<String> = (0..100)
        .map(|i| format!("user{i:03}@example.org"))
        .collect();
    let ecr = stage.ecr().await;
    futures_util::future::join_all(users.iter().map(|u| {
        let ecr = ecr.clone();
        async move {
            ecr.create_repository()
                .repository_name(repo(u))
                .send()
                .await
                .unwrap()
        }
    }))
    .await;
    let ddb = stage.dynamodb().await;
    let account = |i: usize, w: usize| format!("{:012}", 500_000_000_000u64 + (i * 10 + w) as u64);
    let write_round = |k: usize, users: &[String], changed: &dyn Fn(usize) -> bool| {
        let ddb = ddb.clone();
        let items: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                // k=0,1: the user's two Direct Pay rows; later: the first row again, touched
                // (or, for a changed user, with a new account).
                let (ws, acct) = match k {
                    0 => ("ws-a", account(i, 0)),
                    1 => ("ws-b", account(i, 1)),
                    _ if changed(i) => ("ws-a", account(i, 2)),
                    _ => ("ws-a", account(i, 0)),
                };
                let mut item = row(u, ws, &acct);
                item.insert("last_seen".into(), AttributeValue::N(k.to_string()));
                item
            })
            .collect();
        async move {
            for chunk in items.chunks(10) {
                futures_util::future::join_all(chunk.iter().map(|item| {
                    ddb.put_item()
                        .table_name(access_rig::TABLE)
                        .set_item(Some(item.clone()))
                        .send()
                }))
                .await
                .into_iter()
                .for_each(|r| {
                    r.unwrap();
                });
            }
        }
    };

    // Batch 1: every user is new (two rows) and touched eight more times.
    for k in 0..10 {
        write_round(k, &users, &|_| false).await;
    }
    let batch = stage.next_batch().await;
    assert_eq!(batch["Records"].as_array().unwrap().len(), 1000);
    let (sync, config) = stage.sync(&[]).await;
    let fresh = measure(&stage, &sync, &config, batch).await;

    // Batch 2: 1,000 records that change nothing.
    for k in 2..12 {
        write_round(k, &users, &|_| false).await;
    }
    let batch = stage.next_batch().await;
    assert_eq!(batch["Records"].as_array().unwrap().len(), 1000);
    let noop = measure(&stage, &sync, &config, batch).await;

    // Batch 3: 1,000 records of which 10 users' change their account.
    for k in 2..12 {
        write_round(k, &users, &|i| i % 10 == 0).await;
    }
    let batch = stage.next_batch().await;
    let some = measure(&stage, &sync, &config, batch).await;

    println!("calls per distinct user, 1,000 records over 100 users:");
    for (name, m) in [
        ("every user granted", &fresh),
        ("nothing changes", &noop),
        ("10 users change", &some),
    ] {
        println!(
            "  {name:<20} {:.2} calls/user ({}), writes {}, plus {} AssumeRole",
            m.per_user, m.by_operation, m.writes, m.assume_role
        );
    }
    // Nothing to do: a Query per user id the name stands for (the user and
    // `user000\u{40E}xample.org`: `-40e` also reads as U+040E) and a
    // GetRepositoryPolicy per user, no write.
    assert_eq!(noop.writes, 0);
    assert!(noop.per_user <= 3.0, "{}", noop.per_user);
    assert!(some.per_user <= 3.5, "{}", some.per_user);
    // A user whose access changes costs those, a Set, and the Queries that
    // re-check the table after the write (what makes racing writers converge).
    assert!(fresh.per_user <= 6.0, "{}", fresh.per_user);
    assert_eq!(fresh.writes, 100);
    assert!(
        fresh.assume_role <= 1,
        "the role is assumed once, not per user"
    );
    for user in users.iter().step_by(9) {
        assert_eq!(
            stage.granted(&repo(user)).await,
            stage.desired(user).await,
            "{user}"
        );
    }
}

struct Measured {
    per_user: f64,
    writes: usize,
    assume_role: usize,
    by_operation: String,
}

async fn measure(stage: &Stage, sync: &AccessSync, config: &Config, batch: Value) -> Measured {
    let mark = stage.proxy.mark();
    let (answer, report) = stream_batch(sync, config, batch).await;
    assert_eq!(answer, no_failures());
    assert_eq!(report.reports.len(), 100, "one reconcile per distinct user");
    let calls = stage.proxy.calls_since(mark);
    let assume_role = calls.iter().filter(|c| c.operation == "AssumeRole").count();
    let aws: Vec<_> = calls
        .iter()
        .filter(|c| c.operation != "AssumeRole")
        .collect();
    assert_eq!(
        aws.len(),
        report.calls.total() as usize,
        "the use case's count matches moto's"
    );
    let mut ops: Vec<String> = aws
        .iter()
        .map(|c| c.operation.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ops.sort();
    let by_operation = ops
        .iter()
        .map(|op| format!("{op} {}", aws.iter().filter(|c| &c.operation == op).count()))
        .collect::<Vec<_>>()
        .join(", ");
    Measured {
        per_user: aws.len() as f64 / 100.0,
        writes: aws
            .iter()
            .filter(|c| {
                matches!(
                    c.operation.as_str(),
                    "SetRepositoryPolicy" | "DeleteRepositoryPolicy" | "CreateRepository"
                )
            })
            .count(),
        assume_role,
        by_operation,
    }
}

#[test]
fn given_user_ids_when_escaped_by_the_cli_then_gen3s_names_and_a_clear_error_for_invalid_ones() {
    let cli = common::cli_binary();
    let run = |args: &[&str]| {
        std::process::Command::new(&cli)
            .args(args)
            .output()
            .expect("run ecr-bridge")
    };

    for (user, escaped) in [
        ("user1@username.com", "user1-40username-2ecom"),
        ("first_last@uchicago.edu", "first-5flast-40uchicago-2eedu"),
        ("josé@x.io", "jos-e9-40x-2eio"),
    ] {
        let out = run(&["escape", user]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{escaped}\n"));
    }
    let out = run(&[
        "escape",
        "user1@username.com",
        "--prefix",
        "nextflow-approved",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nextflow-approved/user1-40username-2ecom\n"
    );

    let out = run(&["escape", "User@x.org", "--prefix", "nextflow-approved"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nextflow-approved/-55ser-40x-2eorg") && err.contains("starts with '-'"),
        "{err}"
    );
    let out = run(&["escape", &"a".repeat(300)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 256"));
}

/// Everything a full reconcile and a stream batch log at `RUST_LOG=trace`,
/// through the assumed role: no secret key, session token, signature or
/// security-token header anywhere (the SDK's HTTP layer, which logs bodies
/// at TRACE, is held at DEBUG by the functions' filter).
#[tokio::test(flavor = "multi_thread")]
async fn given_trace_logging_when_reconciling_and_handling_a_batch_through_an_assumed_role_then_no_credential_or_token_appears_in_the_logs(
) {
    let captured = common::capture_all_logs();
    let mut stage = Stage::new().await;
    let jane = "jane-doe@x.io";
    for user in [U1, jane] {
        stage.create_repository(&repo(user)).await;
    }
    stage.put(row(U1, "ws-1", "111111111111")).await;
    let (sync, config) = stage.sync(&[]).await;
    let mark = stage.proxy.mark();

    let (_, reconciled) = full_reconcile(&sync, &config).await;
    stage.put(row(jane, "ws-2", "333333333333")).await;
    stage.delete(U1, "ws-1").await;
    let (answer, _) = next(&mut stage, &sync, &config).await;

    assert_eq!(reconciled.tally.granted, 1);
    assert_eq!(answer, no_failures());
    assert_eq!(stage.granted(&repo(jane)).await, ["333333333333"]);
    assert_eq!(stage.granted(&repo(U1)).await, Vec::<String>::new());
    let calls = stage.proxy.calls_since(mark);
    let assumed = calls.iter().filter(|c| c.operation == "AssumeRole").count();
    assert!(
        assumed >= 1,
        "the repositories are reached through the role"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.operation == "AssumeRole" && c.body.contains("ExternalId")),
        "with its ExternalId"
    );
    let logs = captured.text();
    for expected in [
        "full reconcile done",
        "stream batch done",
        "access reconciled",
    ] {
        assert!(logs.contains(expected), "{expected} is logged");
    }
    assert!(
        logs.lines().any(|l| l.contains("\"TRACE\"")),
        "logging ran at trace"
    );
    assert!(
        logs.contains("aws_smithy") || logs.contains("aws_sdk"),
        "the SDK's own debug lines are in the capture"
    );
    let secrets = [
        SECRET_KEY,        // the function's own secret key
        "FQoGZXIvYXdzE",   // moto's session tokens (the assumed role's) start so
        "SecretAccessKey", // an AssumeRole response body
        "<SessionToken>",  // ditto
        "Signature=",      // SigV4 signatures
        "aws_secret_access_key",
    ];
    // The signer traces its canonical request: the token header is there, redacted.
    let lower = logs.to_ascii_lowercase();
    for (i, _) in lower.match_indices("x-amz-security-token:") {
        let value = &logs[i + "x-amz-security-token:".len()..];
        assert!(
            value.starts_with("** redacted"),
            "session token header in the logs: {}",
            &value[..value.len().min(120)]
        );
    }
    for s in secrets {
        if let Some(i) = logs.find(s) {
            let start = logs[..i].rfind('\n').map_or(0, |n| n + 1);
            panic!(
                "{s:?} leaked into the logs: {}",
                &logs[start..(i + 200).min(logs.len())]
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Issue 13: refused principals, impossible account ids, escape collisions.

/// A capture of this test's JSON logs (the handler runs on the test's task,
/// so a thread-local subscriber sees it).
fn capture_logs() -> (common::CapturedLogs, tracing::subscriber::DefaultGuard) {
    let captured = common::CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(ecr_bridge_aws::logging::filter("info"))
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Hands `payload` to the handler and returns its report and the EMF
/// document it would print.
async fn measured(sync: &AccessSync, config: &Config, payload: Value) -> (Handled, Value) {
    let (handled, metrics) = handler::handle_measured(sync, config, payload).await;
    (handled.expect("handled"), metrics.to_json())
}

async fn measured_batch(
    stage: &mut Stage,
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

async fn measured_reconcile(sync: &AccessSync, config: &Config) -> (ReconcileReport, Value) {
    match measured(sync, config, sample("scheduled-reconcile.json")).await {
        (Handled::FullReconcile(r), metrics) => (r, metrics),
        (other, _) => panic!("expected a full reconcile, got {other:?}"),
    }
}

const REFUSED: &str = "999999999999";

#[tokio::test(flavor = "multi_thread")]
async fn given_a_policy_with_one_principal_ecr_refuses_when_rows_change_then_the_removed_account_is_revoked_the_refused_one_left_out_and_the_rest_granted(
) {
    let (logs, _guard) = capture_logs();
    // moto takes any policy; the rig's front refuses one naming 999999999999
    // as ECR refuses a closed or unknown account.
    let mut stage = Stage::checking_policies(&[REFUSED]).await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(U1, "ws-1", "111111111111")).await;
    stage.put(row(U1, "ws-2", "222222222222")).await;
    measured_batch(&mut stage, &sync, &config).await;
    assert_eq!(
        stage.granted(&repo(U1)).await,
        ["111111111111", "222222222222"]
    );

    // 222222222222 leaves Direct Pay; the refused account and 333333333333 arrive.
    stage.delete(U1, "ws-2").await;
    stage.put(row(U1, "ws-3", REFUSED)).await;
    stage.put(row(U1, "ws-4", "333333333333")).await;
    let mark = stage.proxy.mark();
    let (report, metrics) = measured_batch(&mut stage, &sync, &config).await;

    assert_eq!(
        stage.granted(&repo(U1)).await,
        ["111111111111", "333333333333"],
        "222222222222 is revoked although ECR refuses the full policy"
    );
    let r = report_for(&report, U1);
    assert_eq!(r.outcome, Outcome::Changed);
    assert_eq!(r.accounts_removed, ["222222222222"]);
    assert_eq!(r.accounts_added, ["333333333333"]);
    let left_out: Vec<(String, &str)> = r
        .left_out
        .iter()
        .map(|(a, why)| (a.to_string(), why.as_str()))
        .collect();
    assert_eq!(left_out, [(REFUSED.to_string(), "refused_by_ecr")]);
    assert!(r.error.is_none(), "not a failure: {:?}", r.error);
    assert_eq!(report.tally.principals_refused, 1);
    assert_eq!(metrics["PrincipalsRefused"], 1.0, "{metrics}");
    // The full policy (refused), the kept account alone (removal lands),
    // then the new one: the refused account is found without a write of its own.
    let writes = stage.proxy.count_since(mark, "SetRepositoryPolicy");
    let front = stage.front.as_ref().unwrap();
    println!(
        "one refused account among three: {writes} SetRepositoryPolicy calls, {} refused",
        front.policies_refused()
    );
    assert_eq!(writes, 3);
    assert_eq!(front.policies_refused(), 1);
    let warning = logs
        .text()
        .lines()
        .find(|l| l.contains("\"WARN\"") && l.contains("left out of the repository policy"))
        .map(str::to_string)
        .expect("a warning per refused account");
    for field in [REFUSED, &repo(U1), "refused_by_ecr", U1] {
        assert!(warning.contains(field), "{field} in {warning}");
    }

    // The full reconcile gets the same answer and changes nothing: the full
    // policy is refused again, and the policy as it is is confirmed before
    // the account is blamed.
    let mark = stage.proxy.mark();
    let (reconciled, metrics) = measured_reconcile(&sync, &config).await;
    let writes = stage.proxy.count_since(mark, "SetRepositoryPolicy");
    println!("the same refused account on the next reconcile: {writes} SetRepositoryPolicy calls");
    assert_eq!(writes, 2);
    assert_eq!(
        stage.granted(&repo(U1)).await,
        ["111111111111", "333333333333"]
    );
    assert_eq!(
        (reconciled.tally.unchanged, reconciled.tally.failed),
        (1, 0)
    );
    assert_eq!(metrics["PrincipalsRefused"], 1.0);

    // moto alone would have granted it: the refusal is the front's, as ECR's.
    stage.set_policy(&repo(U1), &gen3_policy(REFUSED)).await;
    assert_eq!(stage.granted(&repo(U1)).await, [REFUSED]);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_accounts_that_would_take_the_policy_over_10240_characters_when_handled_then_what_fits_is_written_and_the_rest_left_out(
) {
    let mut stage = Stage::checking_policies(&[]).await;
    stage.create_repository(&repo(U1)).await;
    // A foreign statement that leaves room for about three of our principals.
    let mut foreign = foreign_statement();
    foreign["Condition"] = json!({"StringEquals": {"aws:PrincipalTag/team": ["t".repeat(9_700)]}});
    let start = json!({"Version": "2012-10-17", "Statement": [foreign.clone()]}).to_string();
    stage.set_policy(&repo(U1), &start).await;
    let (sync, config) = stage.sync(&[]).await;
    for i in 1..=6 {
        stage
            .put(row(
                U1,
                &format!("ws-{i}"),
                &format!("{i}{i}{i}{i}{i}{i}{i}{i}{i}{i}{i}{i}"),
            ))
            .await;
    }
    let (report, metrics) = measured_batch(&mut stage, &sync, &config).await;

    let policy = stage.policy(&repo(U1)).await.expect("a policy");
    assert!(policy.to_string().len() <= 10_240);
    assert_eq!(
        foreign_of(&policy),
        [foreign],
        "the foreign statement is kept"
    );
    let granted = granted_by(&policy);
    let r = report_for(&report, U1);
    assert!(!granted.is_empty() && granted.len() < 6, "{granted:?}");
    assert_eq!(granted.len() + r.left_out.len(), 6);
    assert!(r
        .left_out
        .iter()
        .all(|(_, why)| why.as_str() == "policy_too_large"));
    // New accounts are taken in id order while they fit.
    assert_eq!(granted[0], "111111111111");
    assert_eq!(metrics["PrincipalsRefused"], r.left_out.len() as f64);
    assert_eq!(
        stage.front.as_ref().unwrap().policies_too_long(),
        0,
        "a policy over the limit is never sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_all_zero_account_and_other_impossible_numbers_when_handled_then_refused_at_parse_time_and_never_granted(
) {
    let mut stage = Stage::new().await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    let n = |v: &str| Some(AttributeValue::N(v.into()));
    stage.put(row(U1, "ws-good", "111111111111")).await;
    stage
        .put(row_with(U1, "ws-zero", n("0"), "Direct Pay"))
        .await;
    stage.put(row(U1, "ws-zeros", "000000000000")).await;
    stage
        .put(row_with(
            U1,
            "ws-negative",
            n("-123456789012"),
            "Direct Pay",
        ))
        .await;
    stage
        .put(row_with(U1, "ws-fraction", n("123456789.5"), "Direct Pay"))
        .await;
    stage
        .put(row_with(U1, "ws-long", n("1234567890123"), "Direct Pay"))
        .await;
    let mark = stage.proxy.mark();

    let (report, metrics) = measured_batch(&mut stage, &sync, &config).await;

    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);
    let r = report_for(&report, U1);
    assert_eq!(r.skipped_rows.len(), 5, "{:?}", r.skipped_rows);
    for (row_id, reason) in [
        ("ws-zero", "all zeros"),
        ("ws-zeros", "all zeros"),
        ("ws-negative", "negative"),
        ("ws-fraction", "not a whole number"),
        ("ws-long", "more than 12 digits"),
    ] {
        assert!(
            r.skipped_rows
                .iter()
                .any(|s| s.contains(row_id) && s.contains(reason)),
            "{row_id}: {reason} in {:?}",
            r.skipped_rows
        );
    }
    assert_eq!(metrics["RowsSkipped"], 5.0);
    assert!(
        stage
            .proxy
            .calls_since(mark)
            .iter()
            .all(|c| !c.body.contains("000000000000")),
        "no policy ever names 000000000000"
    );

    let (reconciled, _) = measured_reconcile(&sync, &config).await;
    assert_eq!(reconciled.tally.rows_skipped, 5);
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);
}

const JANE: &str = "jane.doe@x.io";
/// Escapes exactly as [`JANE`] does: `jane-2edoe-40x-2eio`.
const JANE_TWIN: &str = "jane\u{2ED}oe@x.io";

#[tokio::test(flavor = "multi_thread")]
async fn given_two_user_ids_that_escape_alike_when_both_have_granting_rows_then_neither_is_granted_on_the_shared_repository_on_the_stream_path_and_in_the_full_reconcile(
) {
    let (logs, _guard) = capture_logs();
    let mut stage = Stage::new().await;
    let shared = repo(JANE);
    assert_eq!(shared, repo(JANE_TWIN));
    stage.create_repository(&shared).await;
    stage.create_repository(&repo(U1)).await;
    let (sync, config) = stage.sync(&[]).await;
    stage.put(row(JANE, "ws-1", "111111111111")).await;
    stage.put(row(U1, "ws-1", "333333333333")).await;
    let (report, metrics) = measured_batch(&mut stage, &sync, &config).await;
    assert_eq!(
        stage.granted(&shared).await,
        ["111111111111"],
        "no collision yet"
    );
    assert_eq!(
        (
            report.tally.escape_collisions,
            metrics["EscapeCollisions"].as_f64()
        ),
        (0, Some(0.0))
    );

    // The twin's row arrives: its stream record is for the twin only, and
    // the lookup of the other ids that escape alike finds Jane.
    stage.put(row(JANE_TWIN, "ws-1", "222222222222")).await;
    let (report, metrics) = measured_batch(&mut stage, &sync, &config).await;
    assert_eq!(
        stage.granted(&shared).await,
        Vec::<String>::new(),
        "fail closed"
    );
    let r = report_for(&report, JANE_TWIN);
    assert_eq!(r.outcome, Outcome::Revoked);
    let contest = r.contest.as_ref().expect("the collision is reported");
    assert_eq!(contest.user_ids, [JANE, JANE_TWIN]);
    assert_eq!(metrics["EscapeCollisions"], 1.0);
    let error = logs
        .text()
        .lines()
        .find(|l| l.contains("\"ERROR\"") && l.contains("escape_collision"))
        .map(str::to_string)
        .expect("an error line");
    assert!(error.contains(JANE) && error.contains(JANE_TWIN), "{error}");
    assert!(error.contains(&shared), "{error}");

    // Jane's own record: still nothing, the stream path sees the twin too.
    let mut touched = row(JANE, "ws-1", "111111111111");
    touched.insert("last_login".into(), s("2026-11-23T10:00:00Z"));
    stage.put(touched).await;
    let (report, metrics) = measured_batch(&mut stage, &sync, &config).await;
    assert_eq!(stage.granted(&shared).await, Vec::<String>::new());
    assert_eq!(report_for(&report, JANE).outcome, Outcome::Unchanged);
    assert_eq!(metrics["EscapeCollisions"], 1.0);

    // The full reconcile agrees (it used to grant the union), and the
    // user whose name collides with nobody is unaffected throughout.
    let (reconciled, metrics) = measured_reconcile(&sync, &config).await;
    assert_eq!(stage.granted(&shared).await, Vec::<String>::new());
    assert_eq!(reconciled.tally.escape_collisions, 1);
    assert_eq!(metrics["EscapeCollisions"], 1.0);
    assert_eq!(stage.granted(&repo(U1)).await, ["333333333333"]);
    assert_eq!(reconciled.tally.failed, 0);

    // The twin's row goes: Jane's access comes back.
    stage.delete(JANE_TWIN, "ws-1").await;
    let (report, _) = measured_batch(&mut stage, &sync, &config).await;
    assert_eq!(stage.granted(&shared).await, ["111111111111"]);
    assert!(report_for(&report, JANE_TWIN).contest.is_none());
}
