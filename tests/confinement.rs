//! `confine_to` end to end (issue 13, point 5): a source name chosen so that
//! `{suffix}` carries a `/` into another namespace of the target account
//! (a user repository access sync manages) fails that destination, nothing
//! reaches it, and the rule's other destination still replicates. moto for
//! the AWS APIs, one docker-registry per account, skopeo as the oracle.

mod common;

use common::events::{invoke, push_event};
use common::stage::{role, Stage, OTHER, REGION, SOURCE, TARGET};
use common::{blob_puts, push_image};
use ecr_bridge_aws::replicator::{DestinationStatus, ReplicationError};
use image_replicator::handler::HandlerError;
use rig::{assert_same_image, ImageSpec};
use serde_json::{json, Value};

/// Gen3's escape of jane.doe@x.io under the user-repository prefix.
const USER_REPOSITORY: &str = "nextflow-approved/jane-2edoe-40x-2eio";

/// The Kuali prefix rule, each destination confined to where its names belong.
fn confined_kuali_mapping() -> Value {
    json!({"rules": [{"name": "kuali", "match": {"prefix": "kuali-"}, "create_repository": true,
    "destinations": [
        {"account": TARGET, "region": REGION, "role_arn": role(TARGET),
         "repository": "{suffix}", "confine_to": "coeus"},
        {"account": OTHER, "region": REGION, "role_arn": role(OTHER),
         "repository": "archive/{suffix}", "confine_to": "archive/"}
    ]}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_source_name_whose_suffix_escapes_the_prefix_when_pushed_then_that_destination_fails_naming_the_prefix_nothing_reaches_it_and_the_other_destination_replicates(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    // The user's repository exists in the target account, as access sync made it.
    let target_ecr = stage.ecr_in(TARGET).await;
    target_ecr
        .create_repository()
        .repository_name(USER_REPOSITORY)
        .send()
        .await
        .expect("user repository");
    let source_name = format!("kuali-{USER_REPOSITORY}");
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[30_000]),
        &source_name,
        "v1",
    );
    let (r, c) = stage.replicator(&confined_kuali_mapping()).await;
    let mark = stage.target().request_mark();

    let err = invoke(&r, &c, push_event(&source_name, &image.layout.digest, "v1"))
        .await
        .unwrap_err();

    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("permanent:")
            && text.contains(&format!("gave \"{USER_REPOSITORY}\""))
            && text.contains("outside the destination's confine_to \"coeus\"")
            && text.contains("rule \"kuali\""),
        "{text}"
    );
    let HandlerError::Replication {
        source: ReplicationError::Destinations { outcomes, .. },
    } = &err
    else {
        panic!("{err:?}")
    };
    let refused = &outcomes[0];
    assert_eq!(
        (
            refused.account.as_str(),
            refused.repository.as_str(),
            refused.outcome,
            refused.retryable
        ),
        (TARGET, USER_REPOSITORY, DestinationStatus::Failed, false)
    );
    // Nothing reached the target registry: not one request, so no blob and
    // no manifest in the user's repository.
    let touched = stage.target().requests_since(mark);
    assert!(touched.is_empty(), "{touched:?}");
    assert_eq!(blob_puts(&touched), 0);
    let images = target_ecr
        .list_images()
        .repository_name(USER_REPOSITORY)
        .send()
        .await
        .unwrap();
    assert!(images.image_ids().is_empty(), "{images:?}");
    // The rule's other destination is served.
    assert_eq!(
        outcomes[1].outcome,
        DestinationStatus::Replicated,
        "{outcomes:?}"
    );
    assert_same_image(
        stage.source(),
        &format!("{source_name}:v1"),
        stage.other(),
        &format!("archive/{USER_REPOSITORY}:v1"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_source_name_inside_the_prefix_when_pushed_then_both_destinations_replicate() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[20_000]),
        "kuali-coeus-feature",
        "f1",
    );
    let (r, c) = stage.replicator(&confined_kuali_mapping()).await;

    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus-feature", &image.layout.digest, "f1"),
    )
    .await
    .unwrap();

    assert_eq!(out["result"], "done", "{out}");
    assert_same_image(
        stage.source(),
        "kuali-coeus-feature:f1",
        stage.target(),
        "coeus-feature:f1",
    );
    assert_same_image(
        stage.source(),
        "kuali-coeus-feature:f1",
        stage.other(),
        "archive/coeus-feature:f1",
    );
}
