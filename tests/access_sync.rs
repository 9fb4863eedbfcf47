//! The access-sync function's stream path, end to end against moto: the
//! users table (with its `NEW_AND_OLD_IMAGES` stream) in moto's default
//! account, the repositories in 222222222222 reached through AssumeRole.
//! Stream batches are read from moto's stream API, so records have the
//! real shape; every AWS call the function makes passes through the rig's
//! AWS front, so "no write" and "calls per user" are what moto was asked,
//! not what the code says it did. Grants, changes and revocations; rows
//! and names that are skipped or fail; a 5xx from AWS for one user (moto
//! cannot fail on demand: the front answers). The full reconcile is in
//! `access_sync_reconcile.rs`, calls, logs and the CLI in
//! `access_sync_operations.rs`, what ECR refuses in
//! `access_sync_refusals.rs`; the stage in `access_rig/`.

mod access_rig;
mod common;

use access_rig::steps::{
    capture_logs, foreign_of, foreign_policy, foreign_statement, gen3_policy, next, no_failures,
    report_for, stage_with_repositories, stage_with_u1_granted, stream_batch, U1,
};
use access_rig::{granted_by, repo, row, row_with, s, sample, AccessStage};
use access_sync::handler::{self, HandlerError};
use aws_sdk_dynamodb::types::AttributeValue;
use common::stage::SECRET_KEY;
use ecr_bridge_aws::access_sync::Outcome;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn given_a_new_direct_pay_row_when_its_insert_is_handled_then_the_account_is_granted_pull() {
    let (mut stage, sync, config) = stage_with_repositories(&[U1]).await;
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
    let (mut stage, sync, config) = stage_with_u1_granted().await;

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
    let (mut stage, sync, config) = stage_with_u1_granted().await;

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
    let (mut stage, sync, config) = stage_with_u1_granted().await;

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
    let (mut stage, sync, config) = stage_with_u1_granted().await;
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);

    stage.delete(U1, "ws-1").await;
    let batch = stage.next_batch().await;
    assert_eq!(batch["Records"][0]["eventName"], "REMOVE");
    let mark = stage.aws().mark();
    let (answer, report) = stream_batch(&sync, &config, batch).await;

    assert_eq!(answer, no_failures());
    assert_eq!(stage.policy(&repo(U1)).await, None);
    assert_eq!(stage.aws().count_since(mark, "DeleteRepositoryPolicy"), 1);
    assert_eq!(
        stage.aws().count_since(mark, "SetRepositoryPolicy"),
        0,
        "never an empty Statement list"
    );
    assert_eq!(report_for(&report, U1).outcome, Outcome::Revoked);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_foreign_statement_when_access_is_granted_widened_changed_and_revoked_then_it_survives_every_change(
) {
    let mut stage = AccessStage::new().await;
    let repository = repo(U1);
    stage.create_repository(&repository).await;
    stage.set_policy(&repository, &foreign_policy()).await;
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
    let (mut stage, sync, config) = stage_with_u1_granted().await;

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
        let mark = stage.aws().mark();
        let (answer, report) = stream_batch(&sync, &config, batch.clone()).await;

        assert_eq!(answer, no_failures());
        assert_eq!(report.calls.writes(), 0);
        let calls = stage.aws().calls_since(mark);
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
    let (captured, _guard) = capture_logs("debug");
    let (mut stage, sync, config) = stage_with_repositories(&[U1]).await;
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
    let (mut stage, sync, config) = stage_with_repositories(&[U1]).await;
    stage.put(row("User@x.org", "ws-1", "111111111111")).await;
    stage.put(row(U1, "ws-1", "222222222222")).await;
    let mark = stage.aws().mark();

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
        .aws()
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
    let mut stage = AccessStage::new().await;
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
    let stage = AccessStage::new().await;
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
    // fail on demand, so the front before it answers instead, as an
    // overloaded ECR would (the SDK retries once, then gives up).
    stage
        .aws()
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
    stage.aws().heal();
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
    let (stage, sync, config) = stage_with_repositories(&[U1]).await;

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
