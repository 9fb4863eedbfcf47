//! What ECR refuses and the access-sync function must live with (issue
//! 13; the stage of `access_sync.rs`, its AWS front checking policies as
//! ECR does): a principal ECR refuses, a policy over 10,240 characters,
//! impossible account ids, user ids that escape alike.

mod access_rig;
mod common;

use access_rig::steps::{
    capture_logs, foreign_of, foreign_statement, gen3_policy, log_line, measured_batch,
    measured_reconcile, report_for, stage_with_repositories, U1,
};
use access_rig::{granted_by, repo, row, row_with, s, AccessStage};
use aws_sdk_dynamodb::types::AttributeValue;
use ecr_bridge_aws::access_sync::Outcome;
use serde_json::json;

const REFUSED: &str = "999999999999";

#[tokio::test(flavor = "multi_thread")]
async fn given_a_policy_with_one_principal_ecr_refuses_when_rows_change_then_the_removed_account_is_revoked_the_refused_one_left_out_and_the_rest_granted(
) {
    let (logs, _guard) = capture_logs("info");
    // moto takes any policy; the rig's front refuses one naming 999999999999
    // as ECR refuses a closed or unknown account.
    let mut stage = AccessStage::checking_policies(&[REFUSED]).await;
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
    let mark = stage.aws().mark();
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
    let writes = stage.aws().count_since(mark, "SetRepositoryPolicy");
    let front = stage.aws();
    println!(
        "one refused account among three: {writes} SetRepositoryPolicy calls, {} refused",
        front.policies_refused()
    );
    assert_eq!(writes, 3);
    assert_eq!(front.policies_refused(), 1);
    let warning = log_line(&logs, "WARN", "left out of the repository policy")
        .expect("a warning per refused account");
    for field in [REFUSED, &repo(U1), "refused_by_ecr", U1] {
        assert!(warning.contains(field), "{field} in {warning}");
    }

    // The full reconcile gets the same answer and changes nothing: the full
    // policy is refused again, and the policy as it is is confirmed before
    // the account is blamed.
    let mark = stage.aws().mark();
    let (reconciled, metrics) = measured_reconcile(&sync, &config).await;
    let writes = stage.aws().count_since(mark, "SetRepositoryPolicy");
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
    let mut stage = AccessStage::checking_policies(&[]).await;
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
        stage.aws().policies_too_long(),
        0,
        "a policy over the limit is never sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_all_zero_account_and_other_impossible_numbers_when_handled_then_refused_at_parse_time_and_never_granted(
) {
    let (mut stage, sync, config) = stage_with_repositories(&[U1]).await;
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
    let mark = stage.aws().mark();

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
            .aws()
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
    let (logs, _guard) = capture_logs("info");
    let mut stage = AccessStage::new().await;
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
    let error = log_line(&logs, "ERROR", "escape_collision").expect("an error line");
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
