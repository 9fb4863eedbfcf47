//! The copy engine against real registries (Debian's docker-registry), with
//! skopeo pushing the test images and checking what arrived.

mod common;

use common::*;
use ecr_bridge::copy::CopyError;
use ecr_bridge::registry::{BasicCredentials, RegistryError};
use rig::{assert_same_image, skopeo_digest, ImageSpec, Registry};

const SRC_ACCOUNT: &str = "111111111111";
const DST_ACCOUNT: &str = "222222222222";

#[tokio::test(flavor = "multi_thread")]
async fn given_single_arch_image_when_copied_to_another_registry_under_a_new_name_then_digests_are_identical(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(
        &src,
        &ImageSpec::single(&[300_000, 2_000_000, 50_000]),
        "kuali-coeus",
        "v1",
    );

    let report = copy(
        &at(&src, "kuali-coeus"),
        &tag("v1"),
        &at(&dst, "coeus"),
        &["v1"],
    )
    .await
    .unwrap();

    assert_same_image(&src, "kuali-coeus:v1", &dst, "coeus:v1");
    assert_eq!(report.digest.to_string(), image.layout.digest);
    assert_eq!(report.blobs_uploaded as usize, image.layout.blobs.len());
    assert_eq!(report.bytes_uploaded, image.layout.total_blob_bytes);
    assert_eq!((report.manifests_copied, report.tags_set), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn given_multi_arch_index_when_copied_then_the_index_and_every_child_arrive_identical() {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(
        &src,
        &ImageSpec::multi_arch(&platforms(), &[400_000, 100_000], 1),
        "app",
        "multi",
    );
    let mark = dst.request_mark();

    let report = copy(
        &at(&src, "app"),
        &tag("multi"),
        &at(&dst, "team/app-mirror"),
        &["multi", "stable"],
    )
    .await
    .unwrap();

    assert_same_image(&src, "app:multi", &dst, "team/app-mirror:multi");
    assert_eq!(
        skopeo_digest(&dst, "team/app-mirror:stable").unwrap(),
        image.layout.digest
    );
    assert_eq!(report.manifests_copied, 4, "3 children + the index");
    // The shared layer moves once, not once per platform.
    assert_eq!(report.blobs_uploaded as usize, image.layout.blobs.len());
    let received = dst.requests_since(mark);
    assert_eq!(blob_puts(&received), image.layout.blobs.len());
    assert_eq!(patches(&received), 0, "never chunked uploads");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_docker_schema2_image_and_manifest_list_when_copied_then_docker_media_types_and_digests_are_kept(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let single = push_image(
        &src,
        &ImageSpec::single(&[100_000]).docker(),
        "legacy",
        "v2s2",
    );
    let list = push_image(
        &src,
        &ImageSpec::multi_arch(&platforms()[..2], &[100_000, 20_000], 1)
            .docker()
            .with_seed(7),
        "legacy",
        "list",
    );

    let a = copy(
        &at(&src, "legacy"),
        &tag("v2s2"),
        &at(&dst, "modern"),
        &["v2s2"],
    )
    .await
    .unwrap();
    let b = copy(
        &at(&src, "legacy"),
        &tag("list"),
        &at(&dst, "modern"),
        &["list"],
    )
    .await
    .unwrap();

    assert_eq!(
        a.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        b.media_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(a.digest.to_string(), single.layout.digest);
    assert_eq!(b.digest.to_string(), list.layout.digest);
    assert_same_image(&src, "legacy:v2s2", &dst, "modern:v2s2");
    assert_same_image(&src, "legacy:list", &dst, "modern:list");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_digest_reference_when_copied_without_tags_then_the_target_has_it_by_digest_and_no_tag(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &ImageSpec::single(&[50_000]), "child", "ignored");

    let report = copy(
        &at(&src, "child"),
        &digest(&image.layout.digest),
        &at(&dst, "child-copy"),
        &[],
    )
    .await
    .unwrap();

    assert_eq!(report.tags_set, 0);
    let by_digest = format!("child-copy@{}", image.layout.digest);
    assert_eq!(
        skopeo_digest(&dst, &by_digest).unwrap(),
        image.layout.digest
    );
    let tags = dst.http("GET", "/v2/child-copy/tags/list", &[], b"");
    let listed: serde_json::Value = serde_json::from_slice(&tags.body).unwrap();
    assert!(
        listed["tags"].as_array().is_none_or(|t| t.is_empty()),
        "no tag expected, got {listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_complete_target_when_copied_again_then_no_blob_moves_and_only_the_tag_is_checked()
{
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(
        &src,
        &ImageSpec::multi_arch(&platforms(), &[200_000, 30_000], 1),
        "app",
        "v1",
    );
    copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();
    let mark = dst.request_mark();

    let again = copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();

    let received = dst.requests_since(mark);
    assert_eq!(
        (
            again.blobs_uploaded,
            again.manifests_copied,
            again.bytes_uploaded
        ),
        (0, 0, 0)
    );
    assert_eq!(again.tags_unchanged, 1);
    assert_eq!(blob_puts(&received), 0);
    // One HEAD of the tag tells the whole story.
    assert_eq!(
        received.len(),
        1,
        "target saw {} requests: {received:?}",
        received.len()
    );
    assert!(received.iter().all(|r| r.method == "HEAD"), "{received:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_target_has_some_children_when_multi_arch_copied_then_only_the_missing_children_move()
{
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(
        &src,
        &ImageSpec::multi_arch(&platforms(), &[200_000, 30_000], 0),
        "app",
        "v1",
    );
    // The amd64 child alone arrives first (as with per-child push events).
    let (amd64, _) = &image.layout.manifests[1];
    copy(&at(&src, "app"), &digest(amd64), &at(&dst, "app"), &[])
        .await
        .unwrap();

    let report = copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();

    assert_same_image(&src, "app:v1", &dst, "app:v1");
    assert_eq!(report.manifests_skipped, 1, "amd64 child was already there");
    assert_eq!(report.manifests_copied, 3, "two children and the index");
    // Nothing is shared between platforms here: amd64's config and 2 layers stay put.
    assert_eq!(report.blobs_uploaded as usize, image.layout.blobs.len() - 3);
    assert_eq!(
        report.blobs_skipped, 0,
        "amd64's blobs were never even asked about"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_same_registry_when_renamed_then_blobs_are_mounted_not_uploaded() {
    let reg = Registry::start(SRC_ACCOUNT);
    let image = push_image(
        &reg,
        &ImageSpec::single(&[500_000, 500_000]),
        "kuali-coeus-feature",
        "f1",
    );
    let mark = reg.request_mark();

    let report = copy(
        &at(&reg, "kuali-coeus-feature"),
        &tag("f1"),
        &at(&reg, "coeus-feature"),
        &["f1"],
    )
    .await
    .unwrap();

    assert_same_image(&reg, "kuali-coeus-feature:f1", &reg, "coeus-feature:f1");
    assert_eq!(report.blobs_mounted as usize, image.layout.blobs.len());
    assert_eq!((report.blobs_uploaded, report.bytes_uploaded), (0, 0));
    // What the registry itself saw: a 201 mount per blob, and no upload.
    let received = reg.requests_since(mark);
    let mounts = received
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.uri.contains("mount=")
                && r.uri.contains("from=kuali-coeus-feature")
                && r.status == 201
        })
        .count();
    assert_eq!(mounts, image.layout.blobs.len(), "{received:?}");
    assert_eq!(blob_puts(&received), 0, "{received:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_wrong_password_when_copying_then_a_clear_permanent_authentication_error() {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[10_000]), "app", "v1");
    let bad = ecr_bridge::registry::Repository::new(
        client_with(
            &src,
            Some(BasicCredentials::new("AWS", "not-the-token")),
            fast_retry(),
        ),
        "app",
    );

    let err = copy(&bad, &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap_err();

    assert!(
        matches!(err, CopyError::Registry(RegistryError::Unauthorized { .. })),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("credentials"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-token"),
        "the password must never be shown: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_missing_source_tag_when_copying_then_a_clear_not_found_error_and_nothing_written()
{
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[10_000]), "app", "v1");
    let mark = dst.request_mark();

    let err = copy(&at(&src, "app"), &tag("v9"), &at(&dst, "app"), &["v9"])
        .await
        .unwrap_err();

    assert!(matches!(err, CopyError::SourceNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("app:v9"), "{err}");
    assert!(!err.is_retryable());
    assert!(
        dst.requests_since(mark).is_empty(),
        "the target must not be touched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_oci_artifact_with_a_non_image_config_when_copied_then_it_arrives_identical() {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let artifact = push_image(&src, &ImageSpec::artifact(), "sbom", "v1");

    let report = copy(
        &at(&src, "sbom"),
        &tag("v1"),
        &at(&dst, "sbom-copy"),
        &["v1"],
    )
    .await
    .unwrap();

    assert_eq!(report.digest.to_string(), artifact.layout.digest);
    assert_same_image(&src, "sbom:v1", &dst, "sbom-copy:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_mutable_tag_moved_at_the_source_when_copied_again_then_the_target_tag_follows() {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(
        &src,
        &ImageSpec::single(&[20_000]).with_seed(1),
        "app",
        "latest",
    );
    copy(
        &at(&src, "app"),
        &tag("latest"),
        &at(&dst, "app"),
        &["latest"],
    )
    .await
    .unwrap();
    let newer = push_image(
        &src,
        &ImageSpec::single(&[20_000]).with_seed(2),
        "app",
        "latest",
    );

    let report = copy(
        &at(&src, "app"),
        &tag("latest"),
        &at(&dst, "app"),
        &["latest"],
    )
    .await
    .unwrap();

    assert_eq!(report.tags_set, 1);
    assert_eq!(
        skopeo_digest(&dst, "app:latest").unwrap(),
        newer.layout.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_blob_corrupted_in_source_storage_when_copied_then_digest_mismatch_and_no_manifest_in_target(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &ImageSpec::single(&[200_000]), "app", "v1");
    // Flip bytes of the layer in the registry's own storage: it serves the
    // corrupted content with the original digest, as a broken store would.
    let (layer, _) = image
        .layout
        .blobs
        .iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let hex = layer.strip_prefix("sha256:").unwrap();
    let data = src.data_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).expect("blob data in registry storage");
    bytes[1000] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let err = copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap_err();

    assert!(
        matches!(err, CopyError::Registry(RegistryError::DigestMismatch { ref digest, .. }) if digest == layer),
        "{err:?}"
    );
    // Nothing that names the corrupted layer became visible in the target.
    assert!(rig::skopeo_inspect_raw(&dst, "app:v1").is_err());
    let head = dst.http("HEAD", &format!("/v2/app/blobs/{layer}"), &[], b"");
    assert_eq!(head.status, 404, "the corrupted blob must not be committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_anonymous_source_registry_when_copying_then_no_credentials_are_needed() {
    let src = Registry::start_anonymous();
    let dst = Registry::start(DST_ACCOUNT);
    push_image(&src, &ImageSpec::single(&[10_000]), "public/app", "v1");
    let anonymous =
        ecr_bridge::registry::Repository::new(client_with(&src, None, fast_retry()), "public/app");

    copy(&anonymous, &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();

    assert_same_image(&src, "public/app:v1", &dst, "app:v1");
}

#[test]
fn given_the_cli_when_copying_a_multi_arch_image_then_it_prints_a_json_report_and_skopeo_agrees() {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(
        &src,
        &ImageSpec::multi_arch(&platforms(), &[100_000, 10_000], 1),
        "kuali-coeus",
        "2501",
    );

    let out = std::process::Command::new(cli_binary())
        .args([
            "copy",
            &format!("{}/kuali-coeus:2501", src.host()),
            &format!("{}/coeus", dst.host()),
            "--src-creds-env",
            "SRC_CREDS",
            "--dest-creds-env",
            "DST_CREDS",
            "--plain-http-loopback",
        ])
        .env("SRC_CREDS", src.creds())
        .env("DST_CREDS", dst.creds())
        .output()
        .unwrap();

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(report["digest"], image.layout.digest.as_str());
    assert_eq!(report["tags"][0], "2501");
    assert_same_image(&src, "kuali-coeus:2501", &dst, "coeus:2501");
}

#[test]
fn given_the_cli_when_the_source_is_missing_or_creds_are_wrong_then_it_exits_non_zero_with_a_clear_message(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[10_000]), "app", "v1");
    let run = |source: &str, creds: &str| {
        std::process::Command::new(cli_binary())
            .args([
                "copy",
                source,
                &format!("{}/app", dst.host()),
                "--src-creds-env",
                "C",
                "--plain-http-loopback",
            ])
            .env("C", creds)
            .env("DST", dst.creds())
            .output()
            .unwrap()
    };

    let missing = run(&format!("{}/app:nope", src.host()), &src.creds());
    let wrong = run(&format!("{}/app:v1", src.host()), "AWS:wrong-password");
    let malformed = run("not a reference", &src.creds());

    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    assert_eq!(wrong.status.code(), Some(1));
    let wrong_err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        wrong_err.contains("authentication failed") && !wrong_err.contains("wrong-password"),
        "{wrong_err}"
    );
    assert_eq!(malformed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("invalid image reference"));
    assert!(missing.stdout.is_empty() && wrong.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_cosign_signature_tag_when_copied_with_referrers_then_the_signature_follows_the_image(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &ImageSpec::single(&[20_000]), "app", "v1");
    // cosign stores a signature as an artifact tagged sha256-<hex>.sig in the same repository.
    let sig_tag = format!(
        "sha256-{}.sig",
        image.layout.digest.trim_start_matches("sha256:")
    );
    let signature = push_image(&src, &ImageSpec::artifact().with_seed(9), "app", &sig_tag);
    let copier = ecr_bridge::copy::ImageCopier::new(ecr_bridge::copy::CopyOptions {
        copy_referrers: true,
        ..Default::default()
    });

    let report = copier
        .copy(
            &at(&src, "app"),
            &tag("v1"),
            &at(&dst, "signed-app"),
            &tags(&["v1"]),
        )
        .await
        .unwrap();

    assert_eq!(report.referrers_copied, 1);
    assert_eq!(
        skopeo_digest(&dst, &format!("signed-app:{sig_tag}")).unwrap(),
        signature.layout.digest
    );
    assert_same_image(&src, "app:v1", &dst, "signed-app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_referrers_off_when_copied_then_signature_tags_stay_behind() {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &ImageSpec::single(&[20_000]), "app", "v1");
    let sig_tag = format!(
        "sha256-{}.sig",
        image.layout.digest.trim_start_matches("sha256:")
    );
    push_image(&src, &ImageSpec::artifact().with_seed(9), "app", &sig_tag);

    let report = copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();

    assert_eq!(report.referrers_copied, 0);
    assert!(rig::skopeo_inspect_raw(&dst, &format!("app:{sig_tag}")).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_blob_downloads_redirected_to_an_s3_like_host_when_copied_then_credentials_never_reach_that_host(
) {
    let src = Registry::start_with(rig::RegistryOptions {
        redirect_blobs: true,
        ..rig::RegistryOptions::new(SRC_ACCOUNT)
    });
    let dst = Registry::start(DST_ACCOUNT);
    let image = push_image(&src, &ImageSpec::single(&[300_000, 40_000]), "app", "v1");
    let s3 = src.blob_host().expect("blob host");
    // The stand-in refuses a request that carries Authorization, as S3 does.
    let leaked = rig::http_request(
        &s3.host(),
        "GET",
        "/anything",
        &[("Authorization", &src.auth_header())],
        b"",
    )
    .unwrap();
    assert_eq!(leaked.status, 400);

    copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();

    assert_same_image(&src, "app:v1", &dst, "app:v1");
    let downloads: Vec<_> = s3
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path != "/anything")
        .collect();
    assert_eq!(
        downloads.len(),
        image.layout.blobs.len(),
        "every blob came through the redirect: {downloads:?}"
    );
    assert!(
        downloads
            .iter()
            .all(|r| !r.had_authorization && r.status == 200),
        "{downloads:?}"
    );
}
