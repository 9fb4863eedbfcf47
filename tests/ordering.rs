//! Ordering: events arrive late, twice, or out of order (EventBridge is
//! at-least-once and unordered; Lambda retries), and a copy can take
//! minutes. Whatever the order, a target tag ends where the source tag is,
//! and a late delete never removes an image pushed after it.
//!
//! Real registries and moto as in `replicator.rs`; the fault front holds a
//! copy at its blob GETs so that the race is set up by the test, not by
//! timing (docker-registry has no way to make one copy slower than another).

mod common;

use common::events::{event, invoke, list_tags, put_image_record};
use common::stage::{role, Stage, OTHER, REGION, SOURCE, TARGET};
use common::{push_image, Pushed};
use ecr_bridge_aws::replicator::Replicator;
use image_replicator::config::Config;
use rig::{skopeo_digest, FaultProxy, Gate, ImageSpec, ProxyOptions};
use serde_json::{json, Value};
use std::time::Duration;

const REPO: &str = "kuali-coeus-feature";
const TARGET_REPO: &str = "coeus-feature";

fn mapping(propagate_deletes: bool) -> Value {
    json!({"version": 1, "rules": [
        {"name": "feature", "match": {"exact": REPO}, "propagate_deletes": propagate_deletes,
         "destinations": [{"account": TARGET, "region": REGION, "role_arn": role(TARGET),
                           "external_id": "kuali-sync", "repository": TARGET_REPO}],
         "create_repository": true}
    ]})
}

fn push_event(digest: &str, tag: &str) -> Value {
    event("image-push-tagged.json", REPO, digest, Some(tag))
}

fn delete_event(digest: &str, tag: &str) -> Value {
    event("image-delete.json", REPO, digest, Some(tag))
}

/// Removes an image from the source registry, as `aws ecr batch-delete-image` would.
fn delete_in_source(stage: &Stage, digest: &str) {
    let resp = stage.source().http(
        "DELETE",
        &format!("/v2/{REPO}/manifests/{digest}"),
        &[],
        b"",
    );
    assert_eq!(resp.status, 202, "source delete: {resp:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_slow_large_copy_racing_a_later_small_push_of_the_same_tag_then_the_target_tag_ends_at_the_source_tag(
) {
    // Given: latest -> D1 (large), whose copy is held at its blob GETs.
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let large = push_image(
        stage.source(),
        &ImageSpec::single(&[2_000_000, 500_000]).with_seed(1),
        REPO,
        "latest",
    );
    let gate = Gate::new();
    let front = FaultProxy::start(
        stage.source(),
        ProxyOptions {
            hold_blob_gets: Some(gate.clone()),
            ..ProxyOptions::default()
        },
    );
    let endpoints = stage
        .endpoints()
        .replace(&stage.source().url(), &front.url());
    let mapping_json = mapping(false).to_string();
    let (slow, slow_config) = stage
        .replicator_with_env(&[
            ("MAPPING_JSON", &mapping_json),
            ("REGISTRY_ENDPOINTS", &endpoints),
        ])
        .await;
    let slow_copy = invoke(
        &slow,
        &slow_config,
        push_event(&large.layout.digest, "latest"),
    );

    // When: latest -> D2 (small) is pushed and replicated while D1's copy
    // waits, and then D1's copy goes on to the end.
    let (fast, fast_config) = stage.replicator(&mapping(false)).await;
    let race = async {
        let held = gate.clone();
        let reached =
            tokio::task::spawn_blocking(move || held.wait_held(1, Duration::from_secs(60)));
        assert!(
            reached.await.unwrap(),
            "the large copy never reached its blob GETs"
        );
        let small = push_image(
            stage.source(),
            &ImageSpec::single(&[1_000]).with_seed(2),
            REPO,
            "latest",
        );
        invoke(
            &fast,
            &fast_config,
            push_event(&small.layout.digest, "latest"),
        )
        .await
        .expect("the small push replicates");
        assert_eq!(
            skopeo_digest(stage.target(), &format!("{TARGET_REPO}:latest")).unwrap(),
            small.layout.digest
        );
        gate.open();
        small
    };
    let (late, small) = tokio::join!(slow_copy, race);
    let late = late.expect("the large copy completes");

    // Then: the target's latest is the source's latest (D2); D1 is there by digest.
    let source_latest = skopeo_digest(stage.source(), &format!("{REPO}:latest")).unwrap();
    assert_eq!(source_latest, small.layout.digest);
    assert_eq!(
        skopeo_digest(stage.target(), &format!("{TARGET_REPO}:latest")).unwrap(),
        source_latest,
        "the late copy moved the target tag backwards: {late}"
    );
    let report = &late["destinations"][0]["report"];
    assert_eq!(report["tags_skipped_moved"], 1, "{late}");
    assert_eq!(report["tags_set"], 0, "{late}");
    assert!(skopeo_digest(
        stage.target(),
        &format!("{TARGET_REPO}@{}", large.layout.digest)
    )
    .is_ok());
}

/// Pushes `v1` (an image made from `seed`) to the source and replicates it.
async fn push_v1_and_replicate(stage: &Stage, r: &Replicator, c: &Config, seed: u64) -> Pushed {
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[5_000]).with_seed(seed),
        REPO,
        "v1",
    );
    invoke(r, c, push_event(&image.layout.digest, "v1"))
        .await
        .unwrap();
    image
}

#[tokio::test(flavor = "multi_thread")]
async fn given_delete_then_re_push_when_the_delete_is_processed_late_then_the_new_image_stays() {
    // Given: v1 -> D1 replicated, then deleted in the source and pushed again as D2.
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let (r, c) = stage.replicator(&mapping(true)).await;
    let ecr = stage.ecr_in(TARGET).await;
    let old = push_v1_and_replicate(&stage, &r, &c, 1).await;
    put_image_record(&ecr, TARGET_REPO, "v1", &old.layout).await;
    delete_in_source(&stage, &old.layout.digest);
    let new = push_v1_and_replicate(&stage, &r, &c, 2).await;
    put_image_record(&ecr, TARGET_REPO, "v1", &new.layout).await;

    // When: the delete of v1 -> D1 arrives only now (out of order, or a retry).
    let late = invoke(&r, &c, delete_event(&old.layout.digest, "v1"))
        .await
        .unwrap();

    // Then: the source has v1 again, so nothing is deleted downstream.
    assert_eq!(late["result"], "source_still_has", "{late}");
    assert_eq!(list_tags(&ecr, TARGET_REPO).await, ["v1"]);
    assert_eq!(
        skopeo_digest(stage.target(), &format!("{TARGET_REPO}:v1")).unwrap(),
        new.layout.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_late_delete_of_an_old_digest_when_the_target_tag_points_elsewhere_then_it_is_left_alone_and_the_right_delete_removes_it(
) {
    // Given: v1 -> D1, then v1 -> D2, both replicated; the source then drops v1.
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let (r, c) = stage.replicator(&mapping(true)).await;
    let ecr = stage.ecr_in(TARGET).await;
    let old = push_v1_and_replicate(&stage, &r, &c, 1).await;
    let new = push_v1_and_replicate(&stage, &r, &c, 2).await;
    put_image_record(&ecr, TARGET_REPO, "v1", &new.layout).await;
    delete_in_source(&stage, &new.layout.digest);
    assert!(skopeo_digest(stage.source(), &format!("{REPO}:v1")).is_err());

    // When: a delete naming v1 at the old digest D1 arrives,
    let stale = invoke(&r, &c, delete_event(&old.layout.digest, "v1"))
        .await
        .unwrap();
    // Then: the target's v1 (at D2) is left alone;
    assert_eq!(
        stale["destinations"][0]["outcome"], "tag_moved_on",
        "{stale}"
    );
    assert_eq!(list_tags(&ecr, TARGET_REPO).await, ["v1"]);

    // and the delete naming D2 removes it.
    let right = invoke(&r, &c, delete_event(&new.layout.digest, "v1"))
        .await
        .unwrap();
    assert_eq!(right["destinations"][0]["outcome"], "deleted", "{right}");
    assert!(list_tags(&ecr, TARGET_REPO).await.is_empty());
}
