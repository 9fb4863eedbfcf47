//! What a mapping config would do to the repositories that exist now: which
//! rule each source repository matches, where it would land, and how many
//! images and tags that means. Read-only (DescribeRepositories and
//! DescribeImages, all pages); how a user tests a config before deploying it
//! (the CLI's `plan` command).

use ecr_bridge::ids::{AccountId, Region};
use ecr_bridge::mapping::{ImageDecision, MappingConfig};
use serde::Serialize;

use crate::error::AwsError;
use crate::repositories::{list_images, list_repositories, ImageListing};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Preview {
    pub repositories: Vec<RepositoryPreview>,
    /// Source repositories no rule matches.
    pub unmatched: Vec<String>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub repositories_matched: usize,
    pub images: usize,
    /// Images that would replicate (tag filter applied; untagged per the rule).
    pub images_replicated: usize,
    pub tags_replicated: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RepositoryPreview {
    pub repository: String,
    pub rule: String,
    pub rule_index: usize,
    pub destinations: Vec<PreviewDestination>,
    pub images: usize,
    pub images_replicated: usize,
    pub tags: usize,
    pub tags_replicated: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PreviewDestination {
    pub account: AccountId,
    pub region: Region,
    /// The rendered target name, or why it is not a valid one.
    pub repository: Result<String, String>,
}

/// Every repository name of the client's registry (all pages).
async fn repository_names(ecr: &aws_sdk_ecr::Client) -> Result<Vec<String>, AwsError> {
    let (listed, _) = list_repositories(ecr).await?;
    Ok(listed.into_iter().map(|r| r.name).collect())
}

/// The preview of every repository of the registry the client reaches.
pub async fn preview(
    config: &MappingConfig,
    ecr: &aws_sdk_ecr::Client,
) -> Result<Preview, AwsError> {
    let mut preview = Preview {
        repositories: Vec::new(),
        unmatched: Vec::new(),
        totals: Totals::default(),
    };
    for repository in repository_names(ecr).await? {
        // Which rule, and where to; tag filters apply per image below.
        let Some(route) = config.route(&repository) else {
            preview.unmatched.push(repository);
            continue;
        };
        let (rule, rule_index, targets) = (route.rule, route.rule_index, route.destinations);
        let images = list_images(ecr, &repository, ImageListing::Active).await?;
        let mut rp = RepositoryPreview {
            repository: repository.clone(),
            rule,
            rule_index,
            destinations: targets
                .into_iter()
                .map(|t| PreviewDestination {
                    account: t.access.account,
                    region: t.access.region,
                    repository: t.repository.map_err(|e| e.to_string()),
                })
                .collect(),
            images: images.len(),
            images_replicated: 0,
            tags: images.iter().map(|i| i.tags.len()).sum(),
            tags_replicated: 0,
        };
        for image in &images {
            if let ImageDecision::Replicate { tags, .. } =
                config.decide_image(&repository, &image.tags)
            {
                rp.images_replicated += 1;
                rp.tags_replicated += tags.len();
            }
        }
        preview.totals.repositories_matched += 1;
        preview.totals.images += rp.images;
        preview.totals.images_replicated += rp.images_replicated;
        preview.totals.tags_replicated += rp.tags_replicated;
        preview.repositories.push(rp);
    }
    Ok(preview)
}
