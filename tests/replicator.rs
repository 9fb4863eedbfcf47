//! The image replicator function, end to end: moto for the AWS APIs (ECR
//! control plane, STS, SSM), one docker-registry per account for the
//! registry API, skopeo as the oracle. Events are the samples in `events/`,
//! with the digest of the image each test pushed.

mod common;

use common::{blob_puts, push_image};
use ecr_bridge_aws::replicator::{DestinationStatus, ReplicationError};
use image_replicator::handler::HandlerError;
use rig::{assert_same_image, skopeo_digest, skopeo_inspect_raw, ImageSpec, Platform};
use serde_json::json;

use common::events::{
    delete_event, event, invoke, kuali_mapping, list_tags, push_event, put_image_record,
};
use common::stage::{role, Stage, OTHER, REGION, SOURCE, TARGET};

#[tokio::test(flavor = "multi_thread")]
async fn given_the_kuali_mapping_when_an_image_is_pushed_then_it_lands_renamed_in_the_other_account_through_the_role(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[200_000, 50_000]),
        "kuali-coeus",
        "2501.0001",
    );
    let (r, c) = stage.replicator(&kuali_mapping()).await;

    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "2501.0001"),
    )
    .await
    .unwrap();

    assert_eq!(out["result"], "done", "{out}");
    assert_eq!(out["destinations"][0]["outcome"], "replicated");
    assert_same_image(
        stage.source(),
        "kuali-coeus:2501.0001",
        stage.target(),
        "coeus:2501.0001",
    );
    // The repository was created in the target account with the rule's settings.
    let ecr = stage.ecr_in(TARGET).await;
    let repos = ecr
        .describe_repositories()
        .repository_names("coeus")
        .send()
        .await
        .unwrap();
    let repo = &repos.repositories()[0];
    assert_eq!(repo.image_tag_mutability().unwrap().as_str(), "IMMUTABLE");
    assert!(repo.image_scanning_configuration().unwrap().scan_on_push());
    assert_eq!(
        repo.encryption_configuration()
            .unwrap()
            .encryption_type()
            .as_str(),
        "KMS"
    );
    assert_eq!(repo.registry_id(), Some(TARGET));
    // Nothing was created in the source account.
    let own = aws_sdk_ecr::Client::new(&stage.sdk().await);
    assert!(own
        .describe_repositories()
        .send()
        .await
        .unwrap()
        .repositories()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_prefix_rule_when_pushed_then_the_prefix_is_replaced() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[30_000]),
        "kuali-coeus-feature",
        "f1",
    );
    let mapping = json!({"rules": [{"match": {"prefix": "kuali-"}, "create_repository": true,
        "destinations": [{"account": TARGET, "region": REGION, "role_arn": role(TARGET), "repository": "legacy/{suffix}"}]}]});
    let (r, c) = stage.replicator(&mapping).await;

    invoke(
        &r,
        &c,
        push_event("kuali-coeus-feature", &image.layout.digest, "f1"),
    )
    .await
    .unwrap();

    assert_same_image(
        stage.source(),
        "kuali-coeus-feature:f1",
        stage.target(),
        "legacy/coeus-feature:f1",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_regex_rule_when_pushed_then_capture_groups_build_the_target_name() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[30_000]),
        "team-blue/api",
        "v3",
    );
    let mapping = json!({"rules": [{"match": {"regex": "team-(?P<team>[a-z]+)/(.+)"}, "create_repository": true,
        "destinations": [{"account": TARGET, "region": REGION, "role_arn": role(TARGET), "repository": "mirror/{team}/{2}"}]}]});
    let (r, c) = stage.replicator(&mapping).await;

    invoke(
        &r,
        &c,
        push_event("team-blue/api", &image.layout.digest, "v3"),
    )
    .await
    .unwrap();

    assert_same_image(
        stage.source(),
        "team-blue/api:v3",
        stage.target(),
        "mirror/blue/api:v3",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_regex_rule_looping_in_the_source_registry_when_pushed_then_that_destination_fails_permanently_as_a_loop_and_nothing_is_pushed_there(
) {
    let captured = common::capture_all_logs();
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[30_000]),
        "app-web",
        "v1",
    );
    // The regex takes its own output: a copy to "app-mirror-web" in the
    // source registry would come back as a push the same rule routes.
    let mapping = json!({"rules": [{"name": "apps", "match": {"regex": "app-(.+)"}, "create_repository": true,
    "destinations": [
        {"account": SOURCE, "region": REGION, "repository": "app-mirror-{1}"},
        {"account": TARGET, "region": REGION, "role_arn": role(TARGET), "repository": "apps/{1}"}
    ]}]});
    let (r, c) = stage.replicator(&mapping).await;
    let mark = stage.source().request_mark();

    let err = invoke(&r, &c, push_event("app-web", &image.layout.digest, "v1"))
        .await
        .unwrap_err();

    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("permanent:")
            && text.contains(
                "loop: target 123456789012/us-east-1/app-mirror-web is itself routed by rule rules[0] (apps)"
            ),
        "{text}"
    );
    let HandlerError::Replication {
        source: ReplicationError::Destinations { outcomes, .. },
    } = &err
    else {
        panic!("{err:?}")
    };
    let looped: Vec<_> = outcomes.iter().filter(|o| o.loop_prevented).collect();
    assert_eq!(looped.len(), 1, "{outcomes:?}");
    assert_eq!(
        (
            looped[0].repository.as_str(),
            looped[0].outcome,
            looped[0].retryable
        ),
        ("app-mirror-web", DestinationStatus::Failed, false)
    );
    let logs = captured.text();
    assert!(
        logs.contains("\"loop_prevented\":true") && logs.contains("loop: target"),
        "the outcome line says loop: {logs}"
    );
    // Nothing reached the looping target: no registry request, no repository.
    let touched: Vec<_> = stage
        .source()
        .requests_since(mark)
        .into_iter()
        .filter(|q| q.uri.contains("app-mirror"))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
    let own = aws_sdk_ecr::Client::new(&stage.sdk().await);
    assert!(own
        .describe_repositories()
        .send()
        .await
        .unwrap()
        .repositories()
        .is_empty());
    // The other destination is still served.
    assert_same_image(stage.source(), "app-web:v1", stage.target(), "apps/web:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_tag_filter_that_excludes_the_tag_when_pushed_then_nothing_is_copied() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[30_000]),
        "kuali-coeus",
        "wip-dirty",
    );
    let mut mapping = kuali_mapping();
    mapping["rules"][0]["tags"] = json!({"include": ["*"], "exclude": ["*-dirty"]});
    let (r, c) = stage.replicator(&mapping).await;
    let mark = stage.target().request_mark();

    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "wip-dirty"),
    )
    .await
    .unwrap();

    assert_eq!(out["result"], "filtered", "{out}");
    assert!(
        stage.target().requests_since(mark).is_empty(),
        "the target registry must not be touched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_multi_arch_push_as_untagged_children_and_a_tagged_index_in_any_order_then_the_target_ends_identical(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let platforms = [
        Platform::new("linux", "amd64"),
        Platform::new("linux", "arm64"),
    ];
    let image = push_image(
        stage.source(),
        &ImageSpec::multi_arch(&platforms, &[60_000, 20_000], 1),
        "kuali-coeus",
        "multi",
    );
    let (r, c) = stage.replicator(&kuali_mapping()).await;
    let children: Vec<String> = image.layout.manifests[1..]
        .iter()
        .map(|(d, _)| d.clone())
        .collect();

    // The index event first, then the children, one of them twice.
    invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "multi"),
    )
    .await
    .unwrap();
    for child in children.iter().chain(children.iter().take(1)) {
        let out = invoke(
            &r,
            &c,
            event("image-push-untagged.json", "kuali-coeus", child, None),
        )
        .await
        .unwrap();
        assert_eq!(out["destinations"][0]["outcome"], "up_to_date", "{out}");
    }

    assert_same_image(
        stage.source(),
        "kuali-coeus:multi",
        stage.target(),
        "coeus:multi",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_children_events_before_the_index_event_when_replicated_then_the_index_completes_the_image(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let platforms = [
        Platform::new("linux", "amd64"),
        Platform::new("linux", "arm64"),
    ];
    let image = push_image(
        stage.source(),
        &ImageSpec::multi_arch(&platforms, &[60_000, 20_000], 1),
        "kuali-coeus",
        "multi",
    );
    let (r, c) = stage.replicator(&kuali_mapping()).await;

    for (child, _) in &image.layout.manifests[1..] {
        invoke(
            &r,
            &c,
            event("image-push-untagged.json", "kuali-coeus", child, None),
        )
        .await
        .unwrap();
    }
    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "multi"),
    )
    .await
    .unwrap();

    assert_eq!(
        out["destinations"][0]["report"]["manifests_skipped"], 2,
        "children were already there: {out}"
    );
    assert_same_image(
        stage.source(),
        "kuali-coeus:multi",
        stage.target(),
        "coeus:multi",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_duplicate_event_when_replicated_again_then_no_blob_moves() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[100_000, 100_000]),
        "kuali-coeus",
        "2501.0001",
    );
    let (r, c) = stage.replicator(&kuali_mapping()).await;
    let e = push_event("kuali-coeus", &image.layout.digest, "2501.0001");
    invoke(&r, &c, e.clone()).await.unwrap();
    let mark = stage.target().request_mark();

    let again = invoke(&r, &c, e).await.unwrap();

    assert_eq!(again["destinations"][0]["outcome"], "up_to_date", "{again}");
    let received = stage.target().requests_since(mark);
    assert_eq!(blob_puts(&received), 0);
    assert!(received.iter().all(|r| r.method == "HEAD"), "{received:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_out_of_order_push_event_when_the_source_tag_moved_on_then_the_target_tag_is_not_moved_back(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let old = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]).with_seed(1),
        "kuali-coeus-feature",
        "latest",
    );
    let new = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]).with_seed(2),
        "kuali-coeus-feature",
        "latest",
    );
    let (r, c) = stage.replicator(&kuali_mapping()).await;

    invoke(
        &r,
        &c,
        push_event("kuali-coeus-feature", &new.layout.digest, "latest"),
    )
    .await
    .unwrap();
    invoke(
        &r,
        &c,
        push_event("kuali-coeus-feature", &old.layout.digest, "latest"),
    )
    .await
    .unwrap();

    assert_eq!(
        skopeo_digest(stage.target(), "coeus-feature:latest").unwrap(),
        new.layout.digest
    );
    // The late event's content is still copied, by digest.
    assert!(skopeo_inspect_raw(
        stage.target(),
        &format!("coeus-feature@{}", old.layout.digest)
    )
    .is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_delete_propagation_on_and_off_when_a_tag_is_deleted_then_only_the_propagating_rule_deletes(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let a = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]).with_seed(1),
        "kuali-coeus",
        "old",
    );
    let b = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]).with_seed(2),
        "kuali-coeus-feature",
        "old",
    );
    let mut mapping = kuali_mapping();
    mapping["rules"][0]["propagate_deletes"] = json!(true);
    let (r, c) = stage.replicator(&mapping).await;
    invoke(&r, &c, push_event("kuali-coeus", &a.layout.digest, "old"))
        .await
        .unwrap();
    invoke(
        &r,
        &c,
        push_event("kuali-coeus-feature", &b.layout.digest, "old"),
    )
    .await
    .unwrap();
    // The images exist in the target's control plane (moto) as ECR would list them.
    let ecr = stage.ecr_in(TARGET).await;
    for (repo, image) in [("coeus", &a), ("coeus-feature", &b)] {
        put_image_record(&ecr, repo, "old", &image.layout).await;
    }
    // The source deletes them (a delete the source still has is a late one).
    for (repo, image) in [("kuali-coeus", &a), ("kuali-coeus-feature", &b)] {
        let path = format!("/v2/{repo}/manifests/{}", image.layout.digest);
        assert_eq!(stage.source().http("DELETE", &path, &[], b"").status, 202);
    }

    let on = invoke(&r, &c, delete_event("kuali-coeus", &a.layout.digest, "old"))
        .await
        .unwrap();
    let off = invoke(
        &r,
        &c,
        delete_event("kuali-coeus-feature", &b.layout.digest, "old"),
    )
    .await
    .unwrap();

    assert_eq!(on["destinations"][0]["outcome"], "deleted", "{on}");
    assert_eq!(off["result"], "delete_not_propagated", "{off}");
    assert!(list_tags(&ecr, "coeus").await.is_empty());
    assert_eq!(list_tags(&ecr, "coeus-feature").await, ["old"]);
    // Deleting again is harmless.
    let again = invoke(&r, &c, delete_event("kuali-coeus", &a.layout.digest, "old"))
        .await
        .unwrap();
    assert_eq!(
        again["destinations"][0]["outcome"], "already_deleted",
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_rule_with_two_destinations_when_pushed_then_both_accounts_get_the_image() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[40_000]),
        "kuali-coeus",
        "v1",
    );
    let mapping = json!({"rules": [{"match": {"exact": "kuali-coeus"}, "create_repository": true, "destinations": [
        {"account": TARGET, "region": REGION, "role_arn": role(TARGET), "repository": "coeus"},
        {"account": OTHER, "region": REGION, "role_arn": role(OTHER), "external_id": "other-side", "repository": "backup/coeus"}
    ]}]});
    let (r, c) = stage.replicator(&mapping).await;

    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap();

    assert_eq!(out["destinations"].as_array().unwrap().len(), 2);
    assert_same_image(stage.source(), "kuali-coeus:v1", stage.target(), "coeus:v1");
    assert_same_image(
        stage.source(),
        "kuali-coeus:v1",
        stage.other(),
        "backup/coeus:v1",
    );
}
