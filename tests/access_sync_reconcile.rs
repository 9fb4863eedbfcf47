//! The access-sync function's full reconcile, end to end against moto
//! (the stage of `access_sync.rs`): a table over several scan pages and
//! orphan repositories, policies Gen3's cronjob wrote, and the stream and a
//! reconcile racing on one user.

mod access_rig;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use access_rig::steps::{
    foreign_of, foreign_policy, foreign_statement, full_reconcile, gen3_policy, next, no_failures,
    stream_batch, U1,
};
use access_rig::{granted_by, repo, row, row_with, s, AccessStage, PREFIX};
use access_sync::handler;
use ecr_bridge_aws::access_sync::RepositoryReport;
use rand::{Rng, SeedableRng};
use rig::{AwsFront, AwsFrontOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn given_a_table_over_several_scan_pages_and_orphan_repositories_when_fully_reconciled_then_every_user_matches_and_orphans_are_revoked(
) {
    let stage = AccessStage::new().await;
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
    let mark = stage.aws().mark();

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
        stage.aws().count_since(mark, "Scan"),
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
    let mark = stage.aws().mark();
    let (_, again) = full_reconcile(&sync, &config).await;
    assert_eq!(again.calls.writes(), 0);
    assert_eq!(
        stage.aws().count_since(mark, "SetRepositoryPolicy")
            + stage.aws().count_since(mark, "DeleteRepositoryPolicy"),
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
    let mut stage = AccessStage::new().await;
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
    let mut stage = AccessStage::new().await;
    let user = "racer@x.io";
    let repository = repo(user);
    stage.create_repository(&repository).await;
    for other in ["a@x.io", "b@x.io"] {
        stage.create_repository(&repo(other)).await;
        stage.put(row(other, "ws-1", "999999999999")).await;
    }
    stage.set_policy(&repository, &foreign_policy()).await;
    // Two function instances, as two Lambda invocations would be; the
    // reconcile's reads of the policy are slowed by a random amount each
    // round, so the stream often writes between the reconcile's reading of
    // the table and its write (the interleaving that needs the re-check).
    let (stream_fn, stream_config) = stage.sync(&[]).await;
    let slow = AwsFront::start_with(&stage.moto_url(), AwsFrontOptions::default());
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
        let table = stage.moto_url();
        let tap = &mut stage.stream;
        let stream_side = async {
            let ddb = aws_sdk_dynamodb::Client::new(&access_rig::stage::sdk_at(&table).await);
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
