//! ECR control-plane calls: list the repositories and images of a registry,
//! check that a target repository exists, create it with the rule's
//! settings, delete an image or a tag.

use aws_sdk_ecr::types::{
    DescribeImagesFilter, EncryptionConfiguration, EncryptionType, ImageDetail, ImageIdentifier,
    ImageScanningConfiguration, ImageStatus, ImageStatusFilter, ImageTagMutability,
    ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType,
};
use ecr_bridge::mapping::{Encryption, RepositorySettings, TagMutability};

use crate::error::AwsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryState {
    Existed,
    Created,
}

/// A repository of the client's registry, as DescribeRepositories lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRepository {
    pub name: String,
    /// The account that owns it.
    pub registry_id: String,
}

/// One page of a list call and where the next starts (`None`: the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// ECR's largest page for DescribeRepositories and DescribeImages.
const MAX_RESULTS: i32 = 1000;

fn next(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_string)
}

/// One DescribeRepositories page from `token` (it cannot filter by prefix).
pub async fn repositories_page(
    ecr: &aws_sdk_ecr::Client,
    token: Option<String>,
) -> Result<Page<ListedRepository>, AwsError> {
    let out = ecr
        .describe_repositories()
        .max_results(MAX_RESULTS)
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ecr:DescribeRepositories", e))?;
    Ok(Page {
        items: out.repositories().iter().filter_map(listed).collect(),
        next_token: next(out.next_token()),
    })
}

fn listed(r: &aws_sdk_ecr::types::Repository) -> Option<ListedRepository> {
    Some(ListedRepository {
        name: r.repository_name()?.to_string(),
        registry_id: r.registry_id().unwrap_or_default().to_string(),
    })
}

/// The named repositories, or the first name that does not exist. One name
/// a call: ECR refuses a whole call for one unknown name without saying
/// which, and the operator wants the name.
pub async fn named_repositories(
    ecr: &aws_sdk_ecr::Client,
    names: &[String],
) -> Result<Result<Vec<ListedRepository>, String>, AwsError> {
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        match ecr
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
        {
            Ok(out) => found.extend(out.repositories().iter().filter_map(listed)),
            Err(e) => {
                let e = AwsError::from_sdk("ecr:DescribeRepositories", e);
                if e.has_code("RepositoryNotFoundException") {
                    return Ok(Err(name.clone()));
                }
                return Err(e);
            }
        }
    }
    Ok(Ok(found))
}

/// Every repository of the client's account and region, sorted by name, and
/// how many DescribeRepositories pages that took.
pub async fn list_repositories(
    ecr: &aws_sdk_ecr::Client,
) -> Result<(Vec<ListedRepository>, u32), AwsError> {
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        pages += 1;
        let page = repositories_page(ecr, token.take()).await?;
        listed.extend(page.items);
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((listed, pages))
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

/// One DescribeImages page of `repository` from `token`.
pub async fn images_page(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    listing: ImageListing,
    token: Option<String>,
) -> Result<Page<SourceImage>, AwsError> {
    let filter = match listing {
        ImageListing::Active => None,
        ImageListing::All => Some(
            DescribeImagesFilter::builder()
                .image_status(ImageStatusFilter::Any)
                .build(),
        ),
    };
    let out = ecr
        .describe_images()
        .repository_name(repository)
        .set_filter(filter)
        .set_next_token(token)
        .max_results(MAX_RESULTS)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ecr:DescribeImages", e))?;
    Ok(Page {
        items: out
            .image_details()
            .iter()
            .map(SourceImage::from_detail)
            .collect(),
        next_token: next(out.next_token()),
    })
}

/// Every image of a repository (all pages).
pub async fn list_images(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    listing: ImageListing,
) -> Result<Vec<SourceImage>, AwsError> {
    let mut images = Vec::new();
    let mut token = None;
    loop {
        let page = images_page(ecr, repository, listing, token.take()).await?;
        images.extend(page.items);
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(images)
}

/// Whether `name` exists in the client's account and region.
pub async fn repository_exists(ecr: &aws_sdk_ecr::Client, name: &str) -> Result<bool, AwsError> {
    match ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(out) => Ok(!out.repositories().is_empty()),
        Err(e) => AwsError::from_sdk("ecr:DescribeRepositories", e)
            .or_when(&["RepositoryNotFoundException"], false),
    }
}

/// Creates `name` with `settings`. Another invocation creating it first is
/// not an error: the repository exists either way.
pub async fn create_repository(
    ecr: &aws_sdk_ecr::Client,
    name: &str,
    settings: &RepositorySettings,
) -> Result<RepositoryState, AwsError> {
    let mutability = match settings.tag_mutability {
        TagMutability::Mutable => ImageTagMutability::Mutable,
        TagMutability::Immutable => ImageTagMutability::Immutable,
        TagMutability::ImmutableWithExclusion => ImageTagMutability::ImmutableWithExclusion,
        TagMutability::MutableWithExclusion => ImageTagMutability::MutableWithExclusion,
    };
    let exclusions = settings
        .tag_mutability_exclusions
        .iter()
        .map(|f| {
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter(f)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AwsError::permanent("ecr:CreateRepository", e.to_string()))?;
    let encryption = match &settings.encryption {
        Encryption::Aes256 => EncryptionConfiguration::builder()
            .encryption_type(EncryptionType::Aes256)
            .build(),
        Encryption::Kms { key } => EncryptionConfiguration::builder()
            .encryption_type(EncryptionType::Kms)
            .set_kms_key(key.clone())
            .build(),
    }
    .map_err(|e| AwsError::permanent("ecr:CreateRepository", e.to_string()))?;
    let result = ecr
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(mutability)
        .set_image_tag_mutability_exclusion_filters((!exclusions.is_empty()).then_some(exclusions))
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(settings.scan_on_push)
                .build(),
        )
        .encryption_configuration(encryption)
        .send()
        .await;
    match result {
        Ok(_) => Ok(RepositoryState::Created),
        Err(e) => AwsError::from_sdk("ecr:CreateRepository", e).or_when(
            &["RepositoryAlreadyExistsException"],
            RepositoryState::Existed,
        ),
    }
}

/// What a delete names: a tag (ECR removes the tag, and the image with its
/// last tag) or a digest (the image and all its tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageId {
    Tag(String),
    Digest(String),
}

/// Deletes an image or tag. Already gone (or no repository) counts as done:
/// deletes are propagated at least once and must be idempotent.
pub async fn delete_image(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    id: &ImageId,
) -> Result<bool, AwsError> {
    let ident = match id {
        ImageId::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
        ImageId::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
    };
    match ecr
        .batch_delete_image()
        .repository_name(repository)
        .image_ids(ident)
        .send()
        .await
    {
        Ok(out) => {
            let failure = out.failures().first();
            match failure {
                None => Ok(true),
                Some(f) => {
                    let code = f
                        .failure_code()
                        .map(|c| c.as_str().to_string())
                        .unwrap_or_default();
                    if code == "ImageNotFound" || code == "ImageTagDoesNotMatchDigest" {
                        Ok(false)
                    } else {
                        Err(AwsError {
                            operation: "ecr:BatchDeleteImage",
                            message: f.failure_reason().unwrap_or("failed").to_string(),
                            retryable: false,
                            code: Some(code),
                        })
                    }
                }
            }
        }
        Err(e) => AwsError::from_sdk("ecr:BatchDeleteImage", e)
            .or_when(&["RepositoryNotFoundException"], false),
    }
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
