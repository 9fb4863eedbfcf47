//! ECR's paging, through the rig's AWS front: moto answers
//! DescribeRepositories and DescribeImages whole, the front pages them as
//! ECR does (100 by default, `maxResults` up to 1000, an opaque
//! `nextToken`), and with a page cap small data spans several pages. The
//! project's own listings must follow `nextToken` to the end and return
//! every entry once.

mod common;

use std::collections::BTreeSet;

use aws_sdk_ecr::error::ProvideErrorMetadata;
use common::stage::Stage;
use ecr_bridge_aws::repositories::{list_images, list_repositories, ImageListing};
use futures_util::stream::{self, StreamExt};
use serde_json::json;

const REPOSITORIES: usize = 250;
const IMAGES: usize = 250;
/// The repository holding the images.
const IMAGE_REPOSITORY: &str = "paging/repo-000";
/// Each page at most this long: 250 entries take 7 pages.
const CAP: usize = 40;

/// Calls to moto at once while filling it.
const PARALLEL: usize = 8;

fn repository_name(i: usize) -> String {
    format!("paging/repo-{i:03}")
}

/// A distinct OCI manifest per `i`, as moto records a pushed image.
fn manifest(i: usize) -> String {
    let blob = |kind: &str| rig::sha256_digest(format!("{kind}-{i}").as_bytes());
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob("config"), "size": 100},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob("layer"), "size": 1000}],
    })
    .to_string()
}

/// `repositories` repositories in moto, the first holding `images` images;
/// (every repository name, every image digest).
async fn fill(
    ecr: &aws_sdk_ecr::Client,
    repositories: usize,
    images: usize,
) -> (BTreeSet<String>, Vec<String>) {
    let names: BTreeSet<String> = (0..repositories).map(repository_name).collect();
    stream::iter(names.iter().cloned())
        .for_each_concurrent(PARALLEL, |name| async move {
            ecr.create_repository()
                .repository_name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
        })
        .await;
    let mut digests: Vec<String> = stream::iter(0..images)
        .map(|i| async move {
            let manifest = manifest(i);
            let digest = rig::sha256_digest(manifest.as_bytes());
            // The digest is given: moto would derive its own from the layers.
            ecr.put_image()
                .repository_name(IMAGE_REPOSITORY)
                .image_tag(format!("v{i:04}"))
                .image_digest(&digest)
                .image_manifest(manifest)
                .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap_or_else(|e| panic!("put image {i}: {e:?}"));
            digest
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    digests.sort();
    (names, digests)
}

/// Whether each of `calls` after the first carried a `nextToken`.
fn follows_tokens(calls: &[rig::AwsCall]) -> bool {
    calls
        .iter()
        .enumerate()
        .all(|(i, c)| c.body.contains("\"nextToken\"") == (i > 0))
}

#[tokio::test]
async fn given_250_repositories_and_250_images_behind_a_page_cap_when_listed_then_every_one_comes_once_over_several_pages(
) {
    let stage = Stage::builder().ecr_page_cap(CAP).build();
    let ecr = aws_sdk_ecr::Client::new(&stage.sdk().await);
    let (names, digests) = fill(&ecr, REPOSITORIES, IMAGES).await;
    let pages = REPOSITORIES.div_ceil(CAP);

    let mark = stage.aws().mark();
    let (listed, pages_taken) = list_repositories(&ecr).await.expect("list repositories");
    let listed: Vec<String> = listed.into_iter().map(|r| r.name).collect();
    assert_eq!(listed.len(), REPOSITORIES, "each once: {listed:?}");
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), names);
    let calls: Vec<_> = stage
        .aws()
        .calls_since(mark)
        .into_iter()
        .filter(|c| c.operation == "DescribeRepositories")
        .collect();
    assert_eq!(calls.len(), pages);
    assert_eq!(
        pages_taken as usize, pages,
        "the listing counts the pages it took"
    );
    assert!(calls.iter().all(|c| c.status == 200));
    assert!(follows_tokens(&calls), "{calls:?}");

    for listing in [ImageListing::Active, ImageListing::All] {
        let mark = stage.aws().mark();
        let images = list_images(&ecr, IMAGE_REPOSITORY, listing)
            .await
            .expect("list images");
        let mut listed: Vec<String> = images.into_iter().map(|i| i.digest).collect();
        listed.sort();
        assert_eq!(listed, digests, "{listing:?}: every image once");
        let calls: Vec<_> = stage
            .aws()
            .calls_since(mark)
            .into_iter()
            .filter(|c| c.operation == "DescribeImages")
            .collect();
        assert_eq!(calls.len(), IMAGES.div_ceil(CAP), "{listing:?}");
        assert!(follows_tokens(&calls), "{listing:?}: {calls:?}");
    }
}

#[tokio::test]
async fn given_250_repositories_and_no_cap_when_listed_without_max_results_then_ecr_default_pages_of_100(
) {
    let stage = Stage::builder().aws_front().build();
    let ecr = aws_sdk_ecr::Client::new(&stage.sdk().await);
    let (names, _) = fill(&ecr, REPOSITORIES, 0).await;

    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut pages = ecr.describe_repositories().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.expect("a page");
        sizes.push(page.repositories().len());
        seen.extend(
            page.repositories()
                .iter()
                .filter_map(|r| r.repository_name().map(str::to_string)),
        );
    }
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(seen.len(), REPOSITORIES);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), names);

    // The project asks for ECR's largest page: one call without a cap.
    let mark = stage.aws().mark();
    let (listed, pages_taken) = list_repositories(&ecr).await.expect("list repositories");
    assert_eq!((listed.len(), pages_taken), (REPOSITORIES, 1));
    assert_eq!(stage.aws().count_since(mark, "DescribeRepositories"), 1);
}

#[tokio::test]
async fn given_a_garbage_or_foreign_next_token_or_bad_max_results_when_sent_then_invalid_parameter_exception(
) {
    let stage = Stage::builder().ecr_page_cap(2).build();
    let ecr = aws_sdk_ecr::Client::new(&stage.sdk().await);
    fill(&ecr, 3, 3).await;

    let garbage = ecr
        .describe_images()
        .repository_name(IMAGE_REPOSITORY)
        .next_token("bm90LWEtdG9rZW4=")
        .send()
        .await
        .expect_err("a garbage token is refused")
        .into_service_error();
    assert!(garbage.is_invalid_parameter_exception(), "{garbage:?}");
    assert!(
        garbage.message().unwrap_or_default().contains("nextToken"),
        "{garbage:?}"
    );

    // A real token, but DescribeRepositories': not one DescribeImages gave.
    let first = ecr
        .describe_repositories()
        .send()
        .await
        .expect("first page");
    let token = first
        .next_token()
        .expect("more than the cap of 2")
        .to_string();
    let foreign = ecr
        .describe_images()
        .repository_name(IMAGE_REPOSITORY)
        .next_token(&token)
        .send()
        .await
        .expect_err("another listing's token is refused")
        .into_service_error();
    assert!(foreign.is_invalid_parameter_exception(), "{foreign:?}");
    let second = ecr
        .describe_repositories()
        .next_token(&token)
        .send()
        .await
        .expect("its own listing goes on");
    assert_eq!(second.repositories().len(), 1);
    assert_eq!(second.next_token(), None, "the last page has no token");

    for bad in [0, 1001] {
        let refused = ecr
            .describe_repositories()
            .max_results(bad)
            .send()
            .await
            .expect_err("maxResults outside 1..=1000")
            .into_service_error();
        assert!(
            refused.is_invalid_parameter_exception(),
            "{bad}: {refused:?}"
        );
    }

    let mixed = ecr
        .describe_repositories()
        .repository_names(IMAGE_REPOSITORY)
        .max_results(10)
        .send()
        .await
        .expect_err("maxResults with repositoryNames")
        .into_service_error();
    assert!(mixed.is_invalid_parameter_exception(), "{mixed:?}");
    let named = ecr
        .describe_repositories()
        .repository_names(IMAGE_REPOSITORY)
        .send()
        .await
        .expect("repositoryNames alone is moto's to answer");
    assert_eq!(named.repositories().len(), 1);
}
