//! Backfill: replicate the images that existed before ecr-bridge (or a new
//! rule) did. Push events only cover what is pushed from now on.
//!
//! The coordinator enumerates the source repositories the mapping routes
//! (DescribeRepositories, DescribeImages, all pages), applies the rules' tag
//! filters, skips every image each destination already has (one manifest
//! HEAD by digest, one per tag), and puts one work item per remaining image
//! on a [`WorkQueue`]. Each item is an image action shaped like the ECR
//! event ([`crate::work_queue`] owns the format and its parser), so the
//! replicator handles it through the same code path as a push, one
//! invocation per image, as many at once as the queue's consumer allows.
//!
//! Resumable because replication is idempotent: running it again finds what
//! was copied already present and enqueues only the rest.

use std::sync::Arc;
use std::time::Instant;

use ecr_bridge::mapping::{ImageDecision, MappingConfig, Replication};
use ecr_bridge::reference::Selector;
use ecr_bridge::registry::ManifestHead;
use ecr_bridge::Digest;
use serde::{Deserialize, Serialize};

use crate::error::AwsError;
use crate::mapping_store::{MappingError, MappingStore};
use crate::registries::{EcrRegistries, SourceRole};
use crate::repositories::{
    list_images, list_repositories, ImageListing, ListedRepository, SourceImage,
};
use crate::work_queue::{work_item, QueueDepth, WorkQueue};

/// Target presence checks in flight at once (manifest HEADs).
const CHECK_CONCURRENCY: usize = 16;

/// What an operator asks for (`{"backfill": {...}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// `start` (default) enqueues; `check` only counts; `status` reports the
    /// queue's depth.
    #[serde(default)]
    pub action: BackfillAction,
    /// Only these source repositories (default: every repository a rule routes).
    #[serde(default)]
    pub repositories: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillAction {
    #[default]
    Start,
    Check,
    Status,
}

/// Counts for the operator. `images_found` = `filtered` + `archived` +
/// `already_present` + `missing`; after a `start`, `enqueued` +
/// `enqueue_failed` = `missing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSummary {
    pub action: BackfillAction,
    pub repositories_matched: usize,
    pub repositories_unmatched: usize,
    /// Images in the matched repositories.
    pub images_found: usize,
    /// Images no tag of which passes the rule's tag filter.
    pub filtered: usize,
    /// Images that would replicate but are in ECR's archive storage class
    /// (or being restored from it): a pull answers 404, so they are not
    /// enqueued. Restore them and run the backfill again.
    #[serde(default)]
    pub archived: usize,
    /// Images every destination already has, with every replicated tag.
    pub already_present: usize,
    /// Images some destination lacks.
    pub missing: usize,
    pub enqueued: usize,
    pub enqueue_failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueDepth>,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("listing source images: {0}")]
    Source(AwsError),
    #[error("the work queue: {0}")]
    Queue(AwsError),
    #[error("backfill needs a work queue: set BACKFILL_QUEUE_URL (the template does)")]
    NoQueue,
    #[error("source repository {0} does not exist")]
    UnknownRepository(String),
    #[error("the function's own region (AWS_REGION): {0}")]
    HomeRegion(ecr_bridge::ids::RegionError),
}

impl BackfillError {
    pub fn is_retryable(&self) -> bool {
        match self {
            BackfillError::Mapping(e) => e.is_retryable(),
            BackfillError::Source(e) | BackfillError::Queue(e) => e.retryable,
            BackfillError::NoQueue
            | BackfillError::UnknownRepository(_)
            | BackfillError::HomeRegion(_) => false,
        }
    }
}

/// The backfill coordinator: reads the mapping and the source registry,
/// checks the destinations, fills the work queue.
pub struct Backfill {
    mapping: Arc<MappingStore>,
    registries: Arc<EcrRegistries>,
    source_role: SourceRole,
    queue: Option<Arc<dyn WorkQueue>>,
}

struct Candidate {
    account: String,
    repository: String,
    image: SourceImage,
    tags: Vec<String>,
    replication: Replication,
}

impl Backfill {
    pub fn new(
        mapping: Arc<MappingStore>,
        registries: Arc<EcrRegistries>,
        source_role: SourceRole,
    ) -> Self {
        Backfill {
            mapping,
            registries,
            source_role,
            queue: None,
        }
    }

    /// Where work items go; `start` and `status` need it.
    pub fn with_queue(mut self, queue: Arc<dyn WorkQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Runs a backfill request.
    pub async fn run(&self, request: &BackfillRequest) -> Result<BackfillSummary, BackfillError> {
        let queue = self.queue.as_deref();
        let started = Instant::now();
        let mut summary = BackfillSummary {
            action: request.action,
            ..BackfillSummary::default()
        };
        if request.action == BackfillAction::Status {
            let queue = queue.ok_or(BackfillError::NoQueue)?;
            summary.queue = Some(queue.depth().await.map_err(BackfillError::Queue)?);
            summary.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(summary);
        }
        if request.action == BackfillAction::Start && queue.is_none() {
            return Err(BackfillError::NoQueue);
        }
        let config = self.mapping.get().await?;
        let region = self
            .registries
            .home_region()
            .map_err(BackfillError::HomeRegion)?;
        // The account is unknown until DescribeRepositories names the
        // registry; the ECR API client does not need it.
        let ecr = self
            .registries
            .ecr_in(&region, self.source_role.assume.as_ref())
            .await;

        let candidates = enumerate(&config, &ecr, request, &mut summary).await?;
        // Which of them every destination already has, a bounded number at once.
        let permits = tokio::sync::Semaphore::new(CHECK_CONCURRENCY);
        let present = futures_util::future::join_all(candidates.iter().map(|c| {
            let permits = &permits;
            async move {
                let _permit = permits.acquire().await;
                self.present_everywhere(c).await
            }
        }))
        .await;
        let checks = candidates.into_iter().zip(present);
        let mut bodies = Vec::new();
        for (c, present) in checks {
            if present {
                summary.already_present += 1;
            } else {
                summary.missing += 1;
                bodies.push(work_item(
                    &c.account,
                    region.as_str(),
                    &c.repository,
                    &c.image.digest,
                    &c.tags,
                ));
            }
        }
        if request.action == BackfillAction::Start {
            let queue = queue.ok_or(BackfillError::NoQueue)?;
            summary.enqueued = queue.send(&bodies).await.map_err(BackfillError::Queue)?;
            summary.enqueue_failed = bodies.len() - summary.enqueued;
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            action = ?summary.action, images_found = summary.images_found, filtered = summary.filtered,
            archived = summary.archived, already_present = summary.already_present, missing = summary.missing, enqueued = summary.enqueued,
            enqueue_failed = summary.enqueue_failed, duration_ms = summary.duration_ms, outcome = "backfill",
            "backfill"
        );
        Ok(summary)
    }

    /// Whether every destination has the image by digest and each replicated
    /// tag points at it. A manifest a registry accepted has all its blobs and
    /// children, so one HEAD per manifest is proof enough. Any doubt (an
    /// error, an invalid target name) counts as missing: the replicator will
    /// then say what is wrong.
    async fn present_everywhere(&self, c: &Candidate) -> bool {
        for target in &c.replication.destinations {
            let Ok(repository) = &target.repository else {
                return false;
            };
            let Ok(client) = self.registries.registry(&target.access).await else {
                return false;
            };
            let Ok(digest) = c.image.digest.parse::<Digest>() else {
                return false;
            };
            let target = client.repository(repository.as_str());
            let same = |head: Result<Option<ManifestHead>, _>| matches!(head, Ok(Some(h)) if h.digest.as_ref() == Some(&digest));
            if !same(
                target
                    .manifest_head(&Selector::Digest(digest.clone()))
                    .await,
            ) {
                return false;
            }
            for tag in &c.tags {
                if !same(target.manifest_head(&Selector::Tag(tag.clone())).await) {
                    return false;
                }
            }
        }
        true
    }
}

/// The source images the mapping routes, with the tags that replicate.
async fn enumerate(
    config: &MappingConfig,
    ecr: &aws_sdk_ecr::Client,
    request: &BackfillRequest,
    summary: &mut BackfillSummary,
) -> Result<Vec<Candidate>, BackfillError> {
    let (repositories, _) = list_repositories(ecr)
        .await
        .map_err(BackfillError::Source)?;
    for wanted in &request.repositories {
        if !repositories.iter().any(|r| &r.name == wanted) {
            return Err(BackfillError::UnknownRepository(wanted.clone()));
        }
    }
    let mut candidates = Vec::new();
    for ListedRepository {
        name: repository,
        registry_id: account,
    } in repositories
    {
        if !request.repositories.is_empty() && !request.repositories.contains(&repository) {
            continue;
        }
        let Some(replication) = config.route(&repository) else {
            summary.repositories_unmatched += 1;
            continue;
        };
        summary.repositories_matched += 1;
        let images = list_images(ecr, &repository, ImageListing::All)
            .await
            .map_err(BackfillError::Source)?;
        for image in images {
            summary.images_found += 1;
            let ImageDecision::Replicate { tags, .. } =
                config.decide_image(&repository, &image.tags)
            else {
                summary.filtered += 1;
                continue;
            };
            if !should_enqueue(&image) {
                summary.archived += 1;
                continue;
            }
            candidates.push(Candidate {
                account: account.clone(),
                repository: repository.clone(),
                image,
                tags,
                replication: replication.clone(),
            });
        }
    }
    Ok(candidates)
}

/// Whether an image that replicates can be copied now: an archived one
/// would only come back as a 404 from every work item.
fn should_enqueue(image: &SourceImage) -> bool {
    !image.archived
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::types::{ImageDetail, ImageStatus};

    #[test]
    fn given_sdk_image_details_when_classified_then_only_pullable_images_are_enqueued() {
        let image = |status: Option<ImageStatus>| {
            SourceImage::from_detail(
                &ImageDetail::builder()
                    .image_digest(format!("sha256:{}", "ef".repeat(32)))
                    .image_tags("v1")
                    .set_image_status(status)
                    .build(),
            )
        };
        assert!(should_enqueue(&image(Some(ImageStatus::Active))));
        assert!(should_enqueue(&image(None)));
        assert!(!should_enqueue(&image(Some(ImageStatus::Archived))));
        assert!(!should_enqueue(&image(Some(ImageStatus::Activating))));
    }

    #[test]
    fn given_a_summary_when_serialized_then_archived_is_a_field_and_old_answers_still_parse() {
        let summary = BackfillSummary {
            archived: 2,
            ..BackfillSummary::default()
        };
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!(value["archived"], 2);
        // A replicator deployed before the field existed answers without it.
        let mut old = value.clone();
        old.as_object_mut().unwrap().remove("archived");
        let parsed: BackfillSummary = serde_json::from_value(old).unwrap();
        assert_eq!(parsed.archived, 0);
    }

    #[test]
    fn given_backfill_requests_when_parsed_then_defaults_and_unknown_fields_refused() {
        let r: BackfillRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.action, BackfillAction::Start);
        assert!(r.repositories.is_empty());
        let r: BackfillRequest =
            serde_json::from_str(r#"{"action":"check","repositories":["a"]}"#).unwrap();
        assert_eq!(r.action, BackfillAction::Check);
        let e = serde_json::from_str::<BackfillRequest>(r#"{"acton":"check"}"#).unwrap_err();
        assert!(e.to_string().contains("acton"), "{e}");
        let e = serde_json::from_str::<BackfillRequest>(r#"{"action":"go"}"#).unwrap_err();
        assert!(e.to_string().contains("go"), "{e}");
    }
}
