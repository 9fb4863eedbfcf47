//! The image replicator against ECR's own behaviours, reproduced by the
//! rig's front where docker-registry and moto differ from ECR: registry
//! tokens that expire on a clock (403, not 401), repositories that only
//! ECR's creation templates create, and a target that stops answering
//! before the invocation's deadline.

mod common;

use std::time::{Duration, Instant};

use common::ecr_stage::{push_event, role, EcrStage, REGION, TARGET_ACCOUNT};
use common::push_image;
use rig::{assert_same_image, ImageSpec, TokenRotation};
use serde_json::{json, Value};

fn coeus(create_repository: Value) -> Value {
    let mut rule = json!({
        "name": "kuali-coeus", "match": {"exact": "kuali-coeus"},
        "destinations": [{"account": TARGET_ACCOUNT, "region": REGION, "role_arn": role(TARGET_ACCOUNT),
                          "external_id": "kuali-sync", "repository": "coeus"}]
    });
    if !create_repository.is_null() {
        rule["create_repository"] = create_repository;
    }
    json!({"version": 1, "rules": [rule]})
}

fn small() -> ImageSpec {
    ImageSpec::single(&[64 << 10, 32 << 10])
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_warm_replicator_whose_registry_token_expires_between_two_events_when_the_second_arrives_then_it_fetches_a_new_token_and_replicates(
) {
    // Tokens live 3 s here (12 h in ECR); the AWS front hands out the
    // front's own tokens, since moto's never expire.
    let stage = EcrStage::with(
        |o| rig::ProxyOptions {
            tokens: Some(TokenRotation::Expiring {
                lifetime: Duration::from_secs(3),
            }),
            ..o
        },
        true,
    );
    let first = push_image(&stage.source, &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!(true))).await;
    let out = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &first.layout.digest, "v1"),
    )
    .await
    .expect("first event");
    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");

    // The same container, after the token's lifetime.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let second = push_image(&stage.source, &small().with_seed(2), "kuali-coeus", "v2");
    let out = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &second.layout.digest, "v2"),
    )
    .await
    .expect("second event after the token expired");

    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert_same_image(&stage.source, "kuali-coeus:v2", &stage.target, "coeus:v2");
    let stats = stage.front.stats();
    assert!(
        stats.expired_tokens >= 1,
        "the old token met ECR's 403: {stats}"
    );
    let issued = stage.aws.as_ref().unwrap().authorization_tokens_answered();
    assert!(issued >= 2, "a new token was fetched: {issued}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_rule_that_leaves_creation_to_the_registry_and_a_create_on_push_template_when_replicating_then_ecr_creates_the_repository_not_us(
) {
    let stage = EcrStage::with(
        |o| rig::ProxyOptions {
            create_on_push: vec![String::new()],
            ..o
        },
        false,
    );
    let image = push_image(&stage.source, &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!("registry"))).await;

    let out = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .expect("replicated");

    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert_eq!(out["destinations"][0]["created_repository"], false, "{out}");
    // Had the replicator created it, the front would have had nothing to create.
    assert_eq!(stage.front.stats().created_on_push, 1);
    assert!(stage.exists_in_target("coeus"));
    assert_same_image(&stage.source, "kuali-coeus:v1", &stage.target, "coeus:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_rule_that_leaves_creation_to_the_registry_and_no_template_covering_the_name_when_replicating_then_a_permanent_error_names_create_on_push(
) {
    let stage = EcrStage::with(
        |o| rig::ProxyOptions {
            create_on_push: vec!["other".into()],
            ..o
        },
        false,
    );
    let image = push_image(&stage.source, &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!("registry"))).await;

    let err = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap_err();

    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.starts_with("permanent:"), "{text}");
    assert!(text.contains("CREATE_ON_PUSH"), "{text}");
    assert!(!stage.exists_in_target("coeus"), "nobody created it");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_target_that_stops_answering_when_the_invocation_deadline_nears_then_the_copy_ends_before_it_with_a_transient_outcome(
) {
    // Every answer of the target waits a minute: a registry that has stalled.
    let stage = EcrStage::with(
        |o| rig::ProxyOptions {
            rates: rig::FaultRates {
                slow: 1.0,
                ..rig::FaultRates::default()
            },
            slow_delay: Duration::from_secs(240),
            ..o
        },
        false,
    );
    let image = push_image(&stage.source, &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!(true))).await;
    let deadline = Instant::now() + Duration::from_secs(4);

    let logs = common::capture_all_logs();

    let started = Instant::now();
    let err = image_replicator::handler::handle_until(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
        Some(deadline),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    let logs = logs.text();

    let text = err.to_string();
    assert!(err.is_retryable(), "{text}");
    assert!(text.starts_with("transient:"), "{text}");
    assert!(text.contains("deadline"), "{text}");
    assert!(
        took < Duration::from_secs(6),
        "ran {took:?} for a 4 s deadline"
    );
    assert!(
        logs.contains("replication failed"),
        "the outcome line: {logs}"
    );
}
