//! Hub and spoke, end to end: two spoke accounts, each with its own
//! registry and read role, replicate into one target through one
//! replicator in the hub account, on their pushes (as the hub's bus hands
//! them on, the spoke's account in the event) and by backfill.
//!
//! The hub's own credentials get moto's hub token, which the spokes'
//! registries refuse: an image can only land when the replicator read it
//! through that spoke's read role. moto does not check trust policies or
//! ExternalIds, so the test reads the AssumeRole calls in the AWS front's
//! log to see that each spoke's role was asked for with its ExternalId.
//! The SQS event source mapping is played by `common::backfill::drain`.

mod common;

use common::events::{push_event, put_image_record};
use common::stage::{role, Stage, REGION, SOURCE as HUB, TARGET};
use image_replicator::handler::{self, HandlerError};
use rig::{assert_same_image, ImageSpec};
use serde_json::{json, Value};

const SPOKE_A: &str = "333333333333";
const SPOKE_B: &str = "444444444444";
const EXTERNAL_ID: &str = "ecr-bridge-hub";
const RUN_TABLE: &str = "ecr-bridge-backfill-runs";

fn read_role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ecr-bridge-source-read")
}

/// Both spokes as sources, each through its read role; `team-*` of either
/// to `mirror/<account-named prefix>` in the target.
fn hub_mapping() -> Value {
    let source = |account: &str| {
        json!({"account": account, "region": REGION,
               "role_arn": read_role(account), "external_id": EXTERNAL_ID})
    };
    let to_target = |prefix: &str| {
        json!([{"account": TARGET, "region": REGION, "role_arn": role(TARGET),
                "repository": format!("{prefix}/{{suffix}}")}])
    };
    json!({"version": 1,
    "sources": [source(SPOKE_A), source(SPOKE_B)],
    "rules": [
        {"name": "team-a", "match": {"prefix": "team-a-"}, "destinations": to_target("a"), "create_repository": true},
        {"name": "team-b", "match": {"prefix": "team-b-"}, "destinations": to_target("b"), "create_repository": true},
    ]})
}

/// A push in `account` as the hub's bus delivers it: the spoke's account.
fn spoke_push(account: &str, repository: &str, digest: &str, tag: &str) -> Value {
    let mut event = push_event(repository, digest, tag);
    event["account"] = json!(account);
    event
}

/// AssumeRole calls for `role_arn` with the ExternalId, from the front's log.
fn assumed(stage: &Stage, role_arn: &str) -> usize {
    let encoded = role_arn.replace(':', "%3A").replace('/', "%2F");
    stage
        .aws()
        .calls_since(0)
        .iter()
        .filter(|c| c.operation == "AssumeRole")
        .filter(|c| c.body.contains(&encoded) && c.body.contains(EXTERNAL_ID))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn given_two_spokes_when_each_pushes_then_both_land_in_the_one_target_read_through_each_spokes_role(
) {
    // Given: a registry per spoke with one image each, the hub's mapping.
    let stage = Stage::builder()
        .accounts(&[HUB, TARGET, SPOKE_A, SPOKE_B])
        .aws_front()
        .build();
    let spoke_a = stage.registry_of(SPOKE_A);
    let spoke_b = stage.registry_of(SPOKE_B);
    let a = common::push_image(
        spoke_a,
        &ImageSpec::single(&[3000, 500]).with_seed(31),
        "team-a-api",
        "v1",
    );
    let b = common::push_image(
        spoke_b,
        &ImageSpec::single(&[2000]).with_seed(32),
        "team-b-api",
        "v1",
    );
    let (r, c) = stage.replicator(&hub_mapping()).await;

    // When: each spoke's push reaches the hub.
    for (account, repository, pushed) in [(SPOKE_A, "team-a-api", &a), (SPOKE_B, "team-b-api", &b)]
    {
        let out = handler::handle(
            &r,
            &c,
            spoke_push(account, repository, &pushed.layout.digest, "v1"),
        )
        .await
        .unwrap_or_else(|e| panic!("{account}: {e}"));
        assert_eq!(
            out["destinations"][0]["outcome"], "replicated",
            "{account}: {out}"
        );
    }

    // Then: both images in the one target, byte for byte, each read
    // through its own spoke's role with the ExternalId.
    assert_same_image(spoke_a, "team-a-api:v1", stage.target(), "a/api:v1");
    assert_same_image(spoke_b, "team-b-api:v1", stage.target(), "b/api:v1");
    assert!(
        assumed(&stage, &read_role(SPOKE_A)) >= 1,
        "spoke A's read role"
    );
    assert!(
        assumed(&stage, &read_role(SPOKE_B)) >= 1,
        "spoke B's read role"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_hub_when_an_account_not_among_its_sources_sends_a_push_then_it_is_refused_for_good_and_nothing_is_copied(
) {
    // Given: a third account's registry holding an image a rule would route.
    let stage = Stage::builder()
        .accounts(&[HUB, TARGET, "555555555555"])
        .aws_front()
        .build();
    let stranger = stage.registry_of("555555555555");
    let pushed = common::push_image(
        stranger,
        &ImageSpec::single(&[1000]).with_seed(33),
        "team-a-api",
        "v1",
    );
    let (r, c) = stage.replicator(&hub_mapping()).await;
    let mark = stage.aws().calls_since(0).len();

    // When: its push reaches the hub (an account the bus policy lets in,
    // but the mapping does not name).
    let err = handler::handle(
        &r,
        &c,
        spoke_push("555555555555", "team-a-api", &pushed.layout.digest, "v1"),
    )
    .await
    .expect_err("not a source");

    // Then: a permanent error naming the account and the sources; no role
    // assumed, nothing read or written.
    assert!(matches!(err, HandlerError::Replication { .. }), "{err}");
    assert!(!err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("555555555555/us-east-1 is not among the mapping's sources (333333333333/us-east-1, 444444444444/us-east-1)"),
        "{message}"
    );
    assert_eq!(stage.aws().count_since(mark, "AssumeRole"), 0);
    assert!(!stage.exists_in_target("a/api"));
}

#[tokio::test(flavor = "multi_thread")]
async fn given_images_in_two_spokes_before_the_hub_when_backfilled_then_each_spoke_is_listed_through_its_role_and_all_land(
) {
    // Given: two images in each spoke, recorded in that spoke's ECR.
    let stage = Stage::builder()
        .accounts(&[HUB, TARGET, SPOKE_A, SPOKE_B])
        .aws_front()
        .build();
    let sdk = stage.sdk().await;
    let queue_url = common::create_queue(&sdk, "ecr-bridge-backfill").await;
    common::backfill::create_run_table(&sdk, RUN_TABLE).await;
    let mut expected = Vec::new();
    for (index, account, repository, target) in [
        (0, SPOKE_A, "team-a-web", "a/web"),
        (1, SPOKE_B, "team-b-web", "b/web"),
    ] {
        let registry = stage.registry_of(account);
        let ecr = common::ecr_as(&sdk, &read_role(account)).await;
        ecr.create_repository()
            .repository_name(repository)
            .send()
            .await
            .unwrap();
        for (n, tag) in ["v1", "v2"].iter().enumerate() {
            let spec =
                ImageSpec::single(&[1500 + n as u64]).with_seed(40 + index as u64 * 2 + n as u64);
            let pushed = common::push_image(registry, &spec, repository, tag);
            put_image_record(&ecr, repository, tag, &pushed.layout).await;
            expected.push((
                account,
                format!("{repository}:{tag}"),
                format!("{target}:{tag}"),
            ));
        }
    }
    let shared = stage
        .replicator_with_env(&[
            ("MAPPING_JSON", &hub_mapping().to_string()),
            ("BACKFILL_QUEUE_URL", &queue_url),
            ("BACKFILL_TABLE", RUN_TABLE),
        ])
        .await;

    // When: a backfill starts and its queue is drained.
    let started = handler::handle(
        &shared.0,
        &shared.1,
        json!({"backfill": {"action": "start"}}),
    )
    .await
    .expect("start");
    common::backfill::drain(&shared, aws_sdk_sqs::Client::new(&sdk), &queue_url, 2).await;

    // Then: every image of both spokes in the target, and the run's counts.
    assert_eq!(started["summary"]["run"]["joined"], false, "{started}");
    for (account, source, target) in &expected {
        assert_same_image(stage.registry_of(account), source, stage.target(), target);
    }
    let status = handler::handle(
        &shared.0,
        &shared.1,
        json!({"backfill": {"action": "status"}}),
    )
    .await
    .expect("status")["summary"]
        .clone();
    assert_eq!(status["run"]["state"], "finished", "{status}");
    assert_eq!(status["repositories_matched"], 2, "{status}");
    assert_eq!(status["enqueued"], 4, "{status}");
    assert_eq!(status["copied"], 4, "{status}");
    assert!(
        assumed(&stage, &read_role(SPOKE_A)) >= 1,
        "spoke A listed through its role"
    );
    assert!(
        assumed(&stage, &read_role(SPOKE_B)) >= 1,
        "spoke B listed through its role"
    );
}
