//! What a mapping config would do to the repositories that exist now: which
//! rule each source repository matches, where it would land, and how many
//! images and tags that means. Read-only (DescribeRepositories and
//! DescribeImages, all pages); how a user tests a config before deploying it.

use aws_sdk_ecr::types::{DescribeImagesFilter, ImageDetail, ImageStatus, ImageStatusFilter};
use ecr_bridge::mapping::{Decision, MappingConfig};
use serde::Serialize;

use crate::error::AwsError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    pub repositories: Vec<RepositoryPlan>,
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
pub struct RepositoryPlan {
    pub repository: String,
    pub rule: String,
    pub rule_index: usize,
    pub destinations: Vec<PlannedDestination>,
    pub images: usize,
    pub images_replicated: usize,
    pub tags: usize,
    pub tags_replicated: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedDestination {
    pub account: String,
    pub region: String,
    /// The rendered target name, or why it is not a valid one.
    pub repository: Result<String, String>,
}

/// One image of a source repository: its digest and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceImage {
    pub digest: String,
    pub tags: Vec<String>,
    /// In ECR's archive storage class (`ARCHIVED`, or `ACTIVATING` while
    /// being restored): pulls answer 404 until it is restored.
    pub archived: bool,
}

impl SourceImage {
    pub fn from_detail(d: &ImageDetail) -> SourceImage {
        SourceImage {
            digest: d.image_digest().unwrap_or_default().to_string(),
            tags: d.image_tags().to_vec(),
            // No status (older ECR, moto) or one added later: assume pullable,
            // as before archiving existed; a pull failure still says why.
            archived: matches!(
                d.image_status(),
                Some(ImageStatus::Archived | ImageStatus::Activating)
            ),
        }
    }
}

/// Which images [`list_images`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageListing {
    /// DescribeImages' default: only `ACTIVE` images.
    Active,
    /// Archived and restoring ones too, to count them.
    All,
}

/// Every repository name of the client's registry (all pages).
pub async fn list_repositories(ecr: &aws_sdk_ecr::Client) -> Result<Vec<String>, AwsError> {
    let (listed, _) = crate::repositories::list_repositories(ecr).await?;
    Ok(listed.into_iter().map(|r| r.name).collect())
}

/// Every image of a repository (all pages).
pub async fn list_images(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    listing: ImageListing,
) -> Result<Vec<SourceImage>, AwsError> {
    let filter = match listing {
        ImageListing::Active => None,
        ImageListing::All => Some(
            DescribeImagesFilter::builder()
                .image_status(ImageStatusFilter::Any)
                .build(),
        ),
    };
    let mut images = Vec::new();
    let mut token = None;
    loop {
        let out = ecr
            .describe_images()
            .repository_name(repository)
            .set_filter(filter.clone())
            .set_next_token(token)
            .max_results(1000)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecr:DescribeImages", e))?;
        images.extend(out.image_details().iter().map(SourceImage::from_detail));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(images)
}

/// Whether an image replicates under `config`, and which of its tags do.
pub fn replicated_tags(
    config: &MappingConfig,
    repository: &str,
    image: &SourceImage,
) -> (bool, Vec<String>) {
    if image.tags.is_empty() {
        return (
            matches!(config.decide(repository, None), Decision::Replicate(_)),
            Vec::new(),
        );
    }
    let tags: Vec<String> = image
        .tags
        .iter()
        .filter(|t| matches!(config.decide(repository, Some(t)), Decision::Replicate(_)))
        .cloned()
        .collect();
    (!tags.is_empty(), tags)
}

/// The plan for every repository of the registry the client reaches.
pub async fn plan(config: &MappingConfig, ecr: &aws_sdk_ecr::Client) -> Result<Plan, AwsError> {
    let mut plan = Plan {
        repositories: Vec::new(),
        unmatched: Vec::new(),
        totals: Totals::default(),
    };
    for repository in list_repositories(ecr).await? {
        // Which rule, and where to; tag filters apply per image below.
        let Some(route) = config.route(&repository) else {
            plan.unmatched.push(repository);
            continue;
        };
        let (rule, rule_index, targets) = (route.rule, route.rule_index, route.destinations);
        let images = list_images(ecr, &repository, ImageListing::Active).await?;
        let mut rp = RepositoryPlan {
            repository: repository.clone(),
            rule,
            rule_index,
            destinations: targets
                .into_iter()
                .map(|t| PlannedDestination {
                    account: t.account,
                    region: t.region,
                    repository: t.repository.map_err(|e| e.to_string()),
                })
                .collect(),
            images: images.len(),
            images_replicated: 0,
            tags: images.iter().map(|i| i.tags.len()).sum(),
            tags_replicated: 0,
        };
        for image in &images {
            let (replicates, tags) = replicated_tags(config, &repository, image);
            rp.images_replicated += usize::from(replicates);
            rp.tags_replicated += tags.len();
        }
        plan.totals.repositories_matched += 1;
        plan.totals.images += rp.images;
        plan.totals.images_replicated += rp.images_replicated;
        plan.totals.tags_replicated += rp.tags_replicated;
        plan.repositories.push(rp);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(status: Option<ImageStatus>) -> ImageDetail {
        ImageDetail::builder()
            .image_digest(format!("sha256:{}", "ab".repeat(32)))
            .image_tags("v1")
            .set_image_status(status)
            .build()
    }

    #[test]
    fn given_image_statuses_when_read_then_archived_and_restoring_images_are_not_pullable() {
        let archived = |status| SourceImage::from_detail(&detail(status)).archived;
        assert!(archived(Some(ImageStatus::Archived)));
        assert!(archived(Some(ImageStatus::Activating)));
        assert!(!archived(Some(ImageStatus::Active)));
        assert!(!archived(None));
        assert!(!archived(Some(ImageStatus::from("SOMETHING_NEW"))));
        let image = SourceImage::from_detail(&detail(Some(ImageStatus::Archived)));
        assert_eq!(image.tags, vec!["v1".to_string()]);
        assert!(image.digest.starts_with("sha256:abab"));
    }
}
