//! The copy engine and the replicator against ECR's own behaviours, where
//! they differ from docker-registry's: PATCH answered 201, pushes to missing
//! repositories refused, immutable tags, and PutImage not seeing the layers
//! just uploaded. Through `rig::FaultProxy`'s ECR front (`ProxyOptions::ecr`)
//! in front of real registries.

mod common;

use common::events::push_event;
use common::stage::{role, Stage, REGION, SOURCE};
use common::*;
use ecr_bridge::copy::CopyError;
use rig::{assert_same_image, skopeo_digest, FaultProxy, ImageSpec, ProxyOptions, Registry};
use serde_json::Value;

const SRC_ACCOUNT: &str = "111111111111";
const DST_ACCOUNT: &str = "222222222222";

/// `app:v1` of `src` copied into `repository` of `dst` through `front`, tag `v1`.
async fn copy_v1(
    src: &Registry,
    front: &FaultProxy,
    dst: &Registry,
    repository: &str,
) -> Result<ecr_bridge::copy::CopyReport, CopyError> {
    copy(
        &at(src, "app"),
        &tag("v1"),
        &via(front, dst, repository, fault_retry()),
        &["v1"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_ecr_like_target_that_answers_patch_with_201_when_a_multi_arch_image_is_copied_then_no_patch_reaches_it(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &multi_arch_spec(), "app", "v1");
    let front = FaultProxy::start(&dst, ProxyOptions::ecr());
    front.create_repository("app", false);
    // The front does count PATCHes (and answers 201 as ECR does).
    let probe = rig::http_request(
        &front.host(),
        "PATCH",
        "/v2/app/blobs/uploads/probe",
        &[("Authorization", &dst.auth_header())],
        b"chunk",
    )
    .unwrap();
    assert_eq!((probe.status, front.stats().patches), (201, 1));
    let mark = dst.request_mark();

    copy_v1(&src, &front, &dst, "app").await.unwrap();

    assert_eq!(front.stats().patches, 1, "only the probe");
    assert_eq!(patches(&dst.requests_since(mark)), 0);
    assert_same_image(&src, "app:v1", &dst, "app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_target_repository_never_created_when_copying_then_target_repository_missing_and_nothing_pushed_until_it_exists(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &multi_arch_spec(), "app", "v1");
    let front = FaultProxy::start(&dst, ProxyOptions::ecr());
    let to = via(&front, &dst, "coeus", fault_retry());
    let mark = dst.request_mark();

    let err = copy(&at(&src, "app"), &tag("v1"), &to, &["v1"])
        .await
        .unwrap_err();

    assert!(
        matches!(&err, CopyError::TargetRepositoryMissing { repository } if repository.ends_with("/coeus")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(front.stats().name_unknown > 0);
    assert!(
        dst.requests_since(mark).is_empty(),
        "nothing reached the registry"
    );

    front.create_repository("coeus", false);
    copy(&at(&src, "app"), &tag("v1"), &to, &["v1"])
        .await
        .unwrap();
    assert_same_image(&src, "app:v1", &dst, "coeus:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_immutable_tag_at_another_digest_when_copying_then_a_permanent_tag_conflict_and_the_tag_is_untouched(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let first = push_image(&src, &ImageSpec::single(&[100 << 10]), "app", "v1");
    let front = FaultProxy::start(&dst, ProxyOptions::ecr());
    front.create_repository("coeus", true);
    let to = via(&front, &dst, "coeus", fault_retry());
    copy(&at(&src, "app"), &tag("v1"), &to, &["v1"])
        .await
        .unwrap();

    // The same image again: the tag already names it, so nothing is PUT.
    let again = copy(&at(&src, "app"), &tag("v1"), &to, &["v1"])
        .await
        .unwrap();
    // The source tag moves to other content; the target tag cannot follow.
    let second = push_image(
        &src,
        &ImageSpec::single(&[100 << 10]).with_seed(2),
        "app",
        "v1",
    );
    let err = copy(&at(&src, "app"), &tag("v1"), &to, &["v1"])
        .await
        .unwrap_err();

    assert_eq!((again.tags_unchanged, again.tags_set), (1, 0));
    assert!(
        matches!(&err, CopyError::TagConflict { tag, existing, wanted, .. }
            if tag == "v1" && *existing == first.layout.digest && wanted.to_string() == second.layout.digest),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("immutable"), "{err}");
    assert_eq!(front.stats().tag_refusals, 1, "only the conflicting PUT");
    assert_eq!(
        skopeo_digest(&dst, "coeus:v1").unwrap(),
        first.layout.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_immutable_tag_set_to_the_same_digest_by_a_concurrent_writer_when_copying_then_the_refusal_counts_as_success(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &multi_arch_spec(), "app", "v1");
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            tag_race: true,
            ..ProxyOptions::ecr()
        },
    );
    front.create_repository("coeus", true);

    let report = copy_v1(&src, &front, &dst, "coeus").await.unwrap();

    assert_eq!(front.stats().tag_refusals, 1, "the tag PUT was refused");
    assert_eq!((report.tags_set, report.tags_unchanged), (0, 1));
    assert_eq!(
        skopeo_digest(&dst, "coeus:v1").unwrap(),
        image.layout.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_put_image_does_not_see_the_layers_just_uploaded_when_copying_then_the_blobs_are_checked_and_the_manifest_put_once_more(
) {
    // ECR's BLOB_UPLOAD_UNKNOWN for layers uploaded moments before, as under
    // concurrent pushes of one layer; docker-registry only shows it by chance.
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &multi_arch_spec(), "app", "v1");
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            layer_lag: 1,
            ..ProxyOptions::ecr()
        },
    );
    front.create_repository("coeus", false);

    let report = copy_v1(&src, &front, &dst, "coeus").await.unwrap();

    assert_eq!(front.stats().layers_not_found, 1);
    assert_same_image(&src, "app:v1", &dst, "coeus:v1");
    // Each blob counted once though checked twice; uploaded once (the
    // target had them all); the three children and the index counted once.
    assert_eq!(
        (
            report.blobs_uploaded,
            report.blobs_skipped,
            report.manifests_copied,
            report.tags_set
        ),
        (10, 0, 4, 1),
        "{report:?}"
    );
    assert_eq!(
        skopeo_digest(&dst, "coeus:v1").unwrap(),
        image.layout.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_put_image_keeps_refusing_the_layers_when_copying_then_a_permanent_error_in_ecr_words_after_one_more_put(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[64 << 10]), "app", "v1");
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            layer_lag: u32::MAX,
            ..ProxyOptions::ecr()
        },
    );
    front.create_repository("coeus", false);

    let err = copy_v1(&src, &front, &dst, "coeus").await.unwrap_err();

    assert_eq!(front.stats().layers_not_found, 2, "the PUT and one more");
    assert!(!err.is_retryable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("BLOB_UPLOAD_UNKNOWN") && text.contains("do not exist"),
        "{text}"
    );
    assert_eq!(front.stats().manifest_puts_forwarded, 0);
}

fn coeus_mapping(create: bool) -> Value {
    let mut rule = serde_json::json!({
        "name": "kuali-coeus", "match": {"exact": "kuali-coeus"},
        "destinations": [{"account": DST_ACCOUNT, "region": REGION, "role_arn": role(DST_ACCOUNT),
                          "external_id": "kuali-sync", "repository": "coeus"}]
    });
    if create {
        rule["create_repository"] = serde_json::json!({"tag_mutability": "IMMUTABLE"});
    }
    serde_json::json!({"version": 1, "rules": [rule]})
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_ecr_like_target_that_refuses_pushes_to_missing_repositories_when_replicating_then_the_replicator_creates_the_repository_first_and_again_after_it_was_deleted(
) {
    let stage = Stage::builder()
        .accounts(&[SOURCE, DST_ACCOUNT])
        .ecr_front(ProxyOptions::ecr())
        .build();
    let first = push_image(stage.source(), &multi_arch_spec(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus_mapping(true)).await;

    let out = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &first.layout.digest, "v1"),
    )
    .await
    .unwrap();
    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert!(stage.exists_in_target("coeus"));
    assert_same_image(stage.source(), "kuali-coeus:v1", stage.target(), "coeus:v1");
    // The front enforces what moto says: the repository was made IMMUTABLE.
    assert_eq!(
        rig::moto_repository(&stage.moto.url(), DST_ACCOUNT, REGION, "coeus"),
        Some(true)
    );

    // Someone deletes the repository; this warm replicator still believes it exists.
    stage.delete_target_repository("coeus").await;
    let second = push_image(
        stage.source(),
        &multi_arch_spec().with_seed(2),
        "kuali-coeus",
        "v2",
    );
    let refused_before = stage.front().stats().name_unknown;

    let out = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &second.layout.digest, "v2"),
    )
    .await
    .unwrap();

    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert!(
        stage.front().stats().name_unknown > refused_before,
        "the push met NAME_UNKNOWN first"
    );
    assert!(stage.exists_in_target("coeus"), "created again");
    assert_same_image(stage.source(), "kuali-coeus:v2", stage.target(), "coeus:v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_deleted_target_repository_and_a_rule_that_may_not_create_it_when_replicating_then_a_clear_permanent_error_and_nothing_pushed(
) {
    let stage = Stage::builder()
        .accounts(&[SOURCE, DST_ACCOUNT])
        .ecr_front(ProxyOptions::ecr())
        .build();
    stage
        .ecr_in(DST_ACCOUNT)
        .await
        .create_repository()
        .repository_name("coeus")
        .send()
        .await
        .unwrap();
    let first = push_image(
        stage.source(),
        &ImageSpec::single(&[64 << 10]),
        "kuali-coeus",
        "v1",
    );
    let (r, c) = stage.replicator(&coeus_mapping(false)).await;
    image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &first.layout.digest, "v1"),
    )
    .await
    .unwrap();
    stage.delete_target_repository("coeus").await;
    let second = push_image(
        stage.source(),
        &ImageSpec::single(&[64 << 10]).with_seed(2),
        "kuali-coeus",
        "v2",
    );
    let before = stage.front().stats();

    let err = image_replicator::handler::handle(
        &r,
        &c,
        push_event("kuali-coeus", &second.layout.digest, "v2"),
    )
    .await
    .unwrap_err();

    let after = stage.front().stats();
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("coeus") && text.contains("does not exist"),
        "{text}"
    );
    assert!(after.name_unknown > before.name_unknown, "{after:?}");
    assert_eq!(after.blob_puts_forwarded, before.blob_puts_forwarded);
    assert!(!stage.exists_in_target("coeus"), "not created");
}
