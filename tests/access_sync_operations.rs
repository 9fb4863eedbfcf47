//! The access-sync function as it is run (the stage of `access_sync.rs`):
//! AWS calls per user for batches of 1,000 records, the CLI's escape of
//! user ids, and no credential or token in trace-level logs.

mod access_rig;
mod common;

use std::collections::BTreeSet;

use access_rig::steps::{full_reconcile, next, no_failures, stream_batch, U1};
use access_rig::{repo, row, AccessStage};
use access_sync::config::Config;
use aws_sdk_dynamodb::types::AttributeValue;
use common::stage::SECRET_KEY;
use ecr_bridge_aws::access_sync::AccessSync;
use serde_json::Value;

/// Issue 7's figure: AWS calls per distinct user for a batch of 1,000
/// records over 100 users, counted by the AWS front (what moto received).
#[tokio::test(flavor = "multi_thread")]
async fn given_batches_of_1000_records_over_100_users_when_handled_then_calls_per_user_are_bounded_and_a_batch_that_changes_nothing_writes_nothing(
) {
    let mut stage = AccessStage::new().await;
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

async fn measure(
    stage: &AccessStage,
    sync: &AccessSync,
    config: &Config,
    batch: Value,
) -> Measured {
    let mark = stage.aws().mark();
    let (answer, report) = stream_batch(sync, config, batch).await;
    assert_eq!(answer, no_failures());
    assert_eq!(report.reports.len(), 100, "one reconcile per distinct user");
    let calls = stage.aws().calls_since(mark);
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
    let mut stage = AccessStage::new().await;
    let jane = "jane-doe@x.io";
    for user in [U1, jane] {
        stage.create_repository(&repo(user)).await;
    }
    stage.put(row(U1, "ws-1", "111111111111")).await;
    let (sync, config) = stage.sync(&[]).await;
    let mark = stage.aws().mark();

    let (_, reconciled) = full_reconcile(&sync, &config).await;
    stage.put(row(jane, "ws-2", "333333333333")).await;
    stage.delete(U1, "ws-1").await;
    let (answer, _) = next(&mut stage, &sync, &config).await;

    assert_eq!(reconciled.tally.granted, 1);
    assert_eq!(answer, no_failures());
    assert_eq!(stage.granted(&repo(jane)).await, ["333333333333"]);
    assert_eq!(stage.granted(&repo(U1)).await, Vec::<String>::new());
    let calls = stage.aws().calls_since(mark);
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
