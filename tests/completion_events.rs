//! Completion events: after each destination the replicator puts one event
//! on the bus `EVENT_BUS_NAME` names, and a rule there (source
//! `ecr-bridge`) delivers it to an SQS queue, all in moto's EventBridge and
//! SQS, as a pipeline would subscribe to it.

mod access_rig;
mod common;

use common::events::{delete_event, invoke, kuali_mapping, push_event, put_image_record};
use common::push_image;
use common::stage::{Stage, REGION, SOURCE, TARGET};
use ecr_bridge_aws::image_action::{ActionKind, ImageAction};
use ecr_bridge_aws::replicator::{DestinationOutcome, DestinationStatus};
use rig::ImageSpec;
use serde_json::{json, Value};

const BUS: &str = "deployments";

/// A bus with a rule sending everything ecr-bridge puts there to a queue,
/// in the account `sdk` acts in (moto's default); returns the queue's URL.
async fn bus_to_queue(sdk: &aws_config::SdkConfig) -> String {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    events.create_event_bus().name(BUS).send().await.unwrap();
    let url = common::create_queue(sdk, "landed").await;
    let arn = format!("arn:aws:sqs:{REGION}:{SOURCE}:landed");
    events
        .put_rule()
        .event_bus_name(BUS)
        .name("ecr-bridge-completions")
        .event_pattern(json!({"source": ["ecr-bridge"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .event_bus_name(BUS)
        .rule("ecr-bridge-completions")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    url
}

/// The events on the queue so far, in order, as EventBridge delivered them.
async fn delivered(sdk: &aws_config::SdkConfig, url: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            return all;
        }
        for m in out.messages() {
            all.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_bus_when_a_push_is_replicated_repeated_deleted_and_fails_then_each_destination_announces_its_outcome(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET]).build();
    let sdk = stage.sdk().await;
    let queue = bus_to_queue(&sdk).await;
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[30_000]),
        "kuali-coeus",
        "v1",
    );
    let mut mapping = kuali_mapping();
    mapping["rules"][0]["propagate_deletes"] = json!(true);
    // A rule whose target repository does not exist and may not be created.
    mapping["rules"][1]["create_repository"] = json!(false);
    let (r, c) = stage
        .replicator_with_env(&[
            ("MAPPING_JSON", &mapping.to_string()),
            ("EVENT_BUS_NAME", BUS),
        ])
        .await;
    let push = push_event("kuali-coeus", &image.layout.digest, "v1");

    invoke(&r, &c, push.clone()).await.unwrap();
    invoke(&r, &c, push.clone()).await.unwrap();
    let first = delivered(&sdk, &queue).await;
    // Delete: the target's control plane lists the image, the source lacks it.
    put_image_record(&stage.ecr_in(TARGET).await, "coeus", "v1", &image.layout).await;
    let path = format!("/v2/kuali-coeus/manifests/{}", image.layout.digest);
    assert_eq!(stage.source().http("DELETE", &path, &[], b"").status, 202);
    invoke(
        &r,
        &c,
        delete_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap();
    let feature = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]).with_seed(5),
        "kuali-coeus-feature",
        "f1",
    );
    let failed = invoke(
        &r,
        &c,
        push_event("kuali-coeus-feature", &feature.layout.digest, "f1"),
    )
    .await;
    let second = delivered(&sdk, &queue).await;

    assert!(failed.is_err(), "the missing repository fails the push");
    let types: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ECR Image Replicated",
            "ECR Image Up To Date",
            "ECR Image Deleted",
            "ECR Image Replication Failed"
        ]
    );
    let replicated = &first[0];
    assert_eq!(replicated["source"], "ecr-bridge");
    assert_eq!(
        replicated["detail"],
        json!({
            "outcome": "replicated", "action": "push", "rule": "kuali-coeus",
            "source": {"account": SOURCE, "region": REGION, "repository": "kuali-coeus"},
            "target": {"account": TARGET, "region": REGION, "repository": "coeus"},
            "digest": image.layout.digest, "tags": ["v1"],
            "bytes_uploaded": replicated["detail"]["bytes_uploaded"],
            "created_repository": true,
            "duration_ms": replicated["detail"]["duration_ms"],
            "error": null,
            "trigger_event_id": push["id"],
        })
    );
    assert!(replicated["detail"]["bytes_uploaded"].as_u64().unwrap() > 30_000);
    assert_eq!(
        first[1]["detail"]["bytes_uploaded"], 0,
        "up to date moves nothing"
    );
    assert_eq!(second[0]["detail"]["outcome"], "deleted");
    assert_eq!(second[0]["detail"]["action"], "delete");
    let error = &second[1]["detail"]["error"];
    assert_eq!(error["class"], "permanent");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{error}"
    );
    assert_eq!(second[1]["detail"]["target"]["repository"], "coeus-feature");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_bus_that_does_not_exist_when_a_push_is_replicated_then_the_replication_still_succeeds(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]),
        "kuali-coeus",
        "v1",
    );
    let (r, c) = stage
        .replicator_with_env(&[
            ("MAPPING_JSON", &kuali_mapping().to_string()),
            ("EVENT_BUS_NAME", "nobody-made-this-bus"),
        ])
        .await;

    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap();

    assert_eq!(out["destinations"][0]["outcome"], "replicated");
    rig::assert_same_image(stage.source(), "kuali-coeus:v1", stage.target(), "coeus:v1");
    // What the handler counts as CompletionEventsFailed: the event refused.
    let action = ImageAction {
        account: SOURCE.parse().unwrap(),
        region: REGION.parse().unwrap(),
        repository: "kuali-coeus".parse().unwrap(),
        digest: image.layout.digest.parse().unwrap(),
        tags: vec!["v1".into()],
        kind: ActionKind::Push,
    };
    let outcome = DestinationOutcome {
        account: TARGET.parse().unwrap(),
        region: REGION.parse().unwrap(),
        repository: "coeus".into(),
        outcome: DestinationStatus::UpToDate,
        report: None,
        error: None,
        retryable: false,
        created_repository: false,
        loop_prevented: false,
        duration_ms: 1,
    };
    let announced = r
        .announce(&action, "kuali-coeus", &[outcome], Some("id-1"))
        .await;
    assert_eq!((announced.sent, announced.failed), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_bus_when_access_sync_grants_changes_and_revokes_then_each_written_policy_announces_it_and_an_unchanged_one_does_not(
) {
    let (mut stage, _, _) = access_rig::steps::stage_with_repositories(&["u1@x.io"]).await;
    let sdk = stage.sdk().await;
    let queue = bus_to_queue(&sdk).await;
    let (sync, config) = stage.sync(&[("EVENT_BUS_NAME", BUS)]).await;
    let repository = access_rig::repo("u1@x.io");

    stage
        .put(access_rig::row("u1@x.io", "ws-1", "111111111111"))
        .await;
    access_rig::steps::next(&mut stage, &sync, &config).await;
    stage
        .put(access_rig::row("u1@x.io", "ws-2", "222222222222"))
        .await;
    access_rig::steps::next(&mut stage, &sync, &config).await;
    access_rig::steps::measured(&sync, &config, json!({"reconcile": {"users": ["u1@x.io"]}})).await;
    stage.delete("u1@x.io", "ws-1").await;
    stage.delete("u1@x.io", "ws-2").await;
    access_rig::steps::next(&mut stage, &sync, &config).await;

    let events = delivered(&sdk, &queue).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ECR Access Granted",
            "ECR Access Changed",
            "ECR Access Revoked"
        ],
        "the reconcile in between wrote nothing and announced nothing: {events:#?}"
    );
    assert_eq!(
        events[1]["detail"],
        json!({"outcome": "changed", "users": ["u1@x.io"], "repository": repository,
               "accounts": ["111111111111", "222222222222"], "accounts_added": ["222222222222"],
               "accounts_removed": [], "created_repository": false})
    );
    assert_eq!(
        events[2]["detail"]["accounts_removed"],
        json!(["111111111111", "222222222222"])
    );
    assert_eq!(events[0]["source"], "ecr-bridge");
}
