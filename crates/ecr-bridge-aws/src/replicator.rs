//! The image replicator's use case: an ECR image action in, every
//! destination of the matching rule brought up to date.
//!
//! Idempotent by digest: a duplicate event finds the target complete and
//! moves nothing; an out-of-order event never moves a tag backwards, because
//! a tag is only set while the source tag still points at the event's digest
//! (asked again immediately before each tag PUT); a late delete never removes
//! a re-pushed image, because a delete waits for the source to lack the tag
//! and removes a target tag only while it points at the event's digest.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecr_bridge::copy::{CopyError, CopyOptions, CopyReport, ImageCopier, RepositoryLocation};
use ecr_bridge::mapping::{Decision, Replication, Target};
use ecr_bridge::reference::Selector;
use ecr_bridge::registry::{RegistryClient, RegistryError};
use ecr_bridge::Digest;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::backfill::WorkQueue;
use crate::error::AwsError;
use crate::loop_guard::{self, LoopDetected};
use crate::mapping_store::{MappingError, MappingStore};
use crate::registries::{Access, EcrRegistries};
use crate::repositories::{self, ImageId, RepositoryState};

/// What happened in the source registry, as the replicator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAction {
    pub account: String,
    pub region: String,
    pub repository: String,
    pub digest: Digest,
    /// The pushed (or deleted) tag; none for a push by digest. A backfill
    /// names every tag of an image in one action.
    pub tags: Vec<String>,
    pub kind: ActionKind,
}

impl ImageAction {
    /// The tags as one log field.
    pub fn tag_list(&self) -> String {
        self.tags.join(",")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Push,
    Delete,
}

/// The result for one destination, logged as one structured line.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationOutcome {
    pub account: String,
    pub region: String,
    pub repository: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<CopyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub retryable: bool,
    pub created_repository: bool,
    /// Failed because the copy would have re-triggered replication.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub loop_prevented: bool,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Replicated,
    /// The target already had everything.
    UpToDate,
    Deleted,
    AlreadyDeleted,
    /// A delete left the target tag alone: it points at another digest than
    /// the deleted one (a later push of the tag reached the target).
    TagMovedOn,
    Failed,
}

/// What an action led to, when nothing failed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Handled {
    /// No rule matches the repository.
    NoRule,
    /// A rule matched but its tag filter refused this push.
    Filtered { rule: String, reason: String },
    /// A delete under a rule that does not propagate deletes.
    DeleteNotPropagated { rule: String },
    /// A delete whose tag (or digest) the source has again: the event is
    /// late, a re-push came after it, and nothing is deleted.
    SourceStillHas { rule: String, reference: String },
    Done {
        rule: String,
        destinations: Vec<DestinationOutcome>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("source registry {access}: {source}")]
    Source {
        access: String,
        #[source]
        source: RegistryError,
    },
    #[error("{failed} of {total} destinations failed (rule {rule}); first: {first}")]
    Destinations {
        rule: String,
        failed: usize,
        total: usize,
        retryable: bool,
        first: String,
        outcomes: Vec<DestinationOutcome>,
    },
}

impl ReplicationError {
    /// Whether Lambda's retry of the whole event can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::Mapping(e) => e.is_retryable(),
            ReplicationError::Source { source, .. } => source.is_retryable(),
            ReplicationError::Destinations { retryable, .. } => *retryable,
        }
    }
}

/// Where the source registry is reached: the function's own credentials, or
/// a configured role.
#[derive(Debug, Clone, Default)]
pub struct SourceRole {
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

pub struct Replicator {
    mapping: MappingStore,
    registries: EcrRegistries,
    copy_options: CopyOptions,
    source_role: SourceRole,
    /// Target repositories seen to exist: checked once per container, not per event.
    known_repositories: Mutex<HashSet<(Access, String)>>,
    /// Where a backfill puts its work items.
    backfill_queue: Option<Arc<dyn WorkQueue>>,
}

impl Replicator {
    pub fn new(
        mapping: MappingStore,
        registries: EcrRegistries,
        copy_options: CopyOptions,
        source_role: SourceRole,
    ) -> Self {
        Replicator {
            mapping,
            registries,
            copy_options,
            source_role,
            known_repositories: Mutex::new(HashSet::new()),
            backfill_queue: None,
        }
    }

    pub fn with_backfill_queue(mut self, queue: Arc<dyn WorkQueue>) -> Self {
        self.backfill_queue = Some(queue);
        self
    }

    pub fn registries(&self) -> &EcrRegistries {
        &self.registries
    }

    pub(crate) fn mapping(&self) -> &MappingStore {
        &self.mapping
    }

    pub(crate) fn source_role(&self) -> &SourceRole {
        &self.source_role
    }

    pub(crate) fn backfill_queue(&self) -> Option<&dyn WorkQueue> {
        self.backfill_queue.as_deref()
    }

    pub async fn handle(&self, action: &ImageAction) -> Result<Handled, ReplicationError> {
        self.handle_until(action, None).await
    }

    /// Like [`Replicator::handle`], with every registry request of the
    /// copy over by `deadline` (an invocation's end less the time to
    /// report): past it the copy stops with a retryable error, so Lambda's
    /// retry or the next receive of a work item carries on.
    pub async fn handle_until(
        &self,
        action: &ImageAction,
        deadline: Option<Instant>,
    ) -> Result<Handled, ReplicationError> {
        let config = self.mapping.get().await?;
        // The rule follows the repository; each tag passes its filter or not.
        let (replication, wanted_tags) = if action.tags.is_empty() {
            match config.decide(&action.repository, None) {
                Decision::NoMatchingRule => return Ok(Handled::NoRule),
                Decision::TagFiltered { rule, reason, .. } => {
                    return Ok(Handled::Filtered {
                        rule,
                        reason: reason.to_string(),
                    })
                }
                Decision::Replicate(r) => (r, Vec::new()),
            }
        } else {
            let mut chosen = None;
            let mut wanted = Vec::new();
            let mut refused = None;
            for tag in &action.tags {
                match config.decide(&action.repository, Some(tag)) {
                    Decision::NoMatchingRule => return Ok(Handled::NoRule),
                    Decision::TagFiltered { rule, reason, .. } => {
                        refused.get_or_insert((rule, reason.to_string()));
                    }
                    Decision::Replicate(r) => {
                        wanted.push(tag.clone());
                        chosen.get_or_insert(r);
                    }
                }
            }
            match (chosen, refused) {
                (Some(r), _) => (r, wanted),
                (None, Some((rule, reason))) => return Ok(Handled::Filtered { rule, reason }),
                (None, None) => return Ok(Handled::NoRule),
            }
        };
        if action.kind == ActionKind::Delete && !replication.propagate_deletes {
            return Ok(Handled::DeleteNotPropagated {
                rule: replication.rule,
            });
        }

        let source = self.source_location(action, deadline).await?;
        // The source tags are asked again before each tag PUT (the copy's
        // `recheck_source_tags`), so a tag moved on meanwhile is left alone.
        let tags = wanted_tags;
        let delete_id = match action.tags.first() {
            Some(t) => ImageId::Tag(t.clone()),
            None => ImageId::Digest(action.digest.to_string()),
        };
        if action.kind == ActionKind::Delete {
            if let Some(reference) = self.source_still_has(&source, &delete_id).await? {
                tracing::info!(
                    repository = %action.repository, reference = %reference, digest = %action.digest,
                    outcome = "source_still_has",
                    "the source has the deleted image again (a later push); nothing deleted"
                );
                return Ok(Handled::SourceStillHas {
                    rule: replication.rule,
                    reference,
                });
            }
        }

        let jobs = replication.destinations.iter().map(|target| async {
            let started = Instant::now();
            let mut outcome = match action.kind {
                ActionKind::Push => match loop_guard::check(&config, action, target, &tags) {
                    Some(looped) => DestinationOutcome::new(target).looped(looped),
                    None => {
                        self.push_to(&source, action, &tags, &replication, target)
                            .await
                    }
                },
                ActionKind::Delete => self.delete_in(&source, action, &delete_id, target).await,
            };
            outcome.duration_ms = started.elapsed().as_millis() as u64;
            log_outcome(action, &replication.rule, &outcome);
            outcome
        });
        let outcomes: Vec<DestinationOutcome> = futures_util::future::join_all(jobs).await;

        let failed: Vec<&DestinationOutcome> = outcomes
            .iter()
            .filter(|o| o.outcome == Outcome::Failed)
            .collect();
        if let Some(first) = failed.first() {
            return Err(ReplicationError::Destinations {
                rule: replication.rule.clone(),
                failed: failed.len(),
                total: outcomes.len(),
                retryable: failed.iter().any(|o| o.retryable),
                first: format!(
                    "{}/{}/{}: {}",
                    first.account,
                    first.region,
                    first.repository,
                    first.error.clone().unwrap_or_default()
                ),
                outcomes,
            });
        }
        Ok(Handled::Done {
            rule: replication.rule,
            destinations: outcomes,
        })
    }

    async fn source_location(
        &self,
        action: &ImageAction,
        deadline: Option<Instant>,
    ) -> Result<RepositoryLocation, ReplicationError> {
        let access = Access {
            account: action.account.clone(),
            region: action.region.clone(),
            role_arn: self.source_role.role_arn.clone(),
            external_id: self.source_role.external_id.clone(),
        };
        let client: RegistryClient =
            self.registries
                .registry(&access)
                .await
                .map_err(|source| ReplicationError::Source {
                    access: access.to_string(),
                    source,
                })?;
        Ok(RepositoryLocation::new(
            client.with_deadline(deadline),
            action.repository.clone(),
        ))
    }

    /// What the source holds under a deleted tag or digest, if anything:
    /// a delete processed after a re-push (out of order, or a retry) finds
    /// the tag there again and must not remove the new image downstream.
    async fn source_still_has(
        &self,
        source: &RepositoryLocation,
        id: &ImageId,
    ) -> Result<Option<String>, ReplicationError> {
        let reference = match id {
            ImageId::Tag(t) | ImageId::Digest(t) => t.as_str(),
        };
        let head = source
            .client
            .manifest_head(&source.repository, reference)
            .await
            .map_err(|e| ReplicationError::Source {
                access: source.client.endpoint().authority(),
                source: e,
            })?;
        Ok(head.map(|h| match (id, h.digest) {
            (ImageId::Tag(t), Some(d)) => format!("{t}@{d}"),
            _ => reference.to_string(),
        }))
    }

    async fn push_to(
        &self,
        source: &RepositoryLocation,
        action: &ImageAction,
        tags: &[String],
        replication: &Replication,
        target: &Target,
    ) -> DestinationOutcome {
        let mut out = DestinationOutcome::new(target);
        let repository = match &target.repository {
            Ok(r) => r.clone(),
            Err(invalid) => return out.failed(invalid.to_string(), false),
        };
        let access = access_of(target);
        let ecr = self.registries.ecr(&access).await;
        match self
            .ensure_repository(&ecr, &access, &repository, replication)
            .await
        {
            Ok(created) => out.created_repository = created,
            Err(e) => return out.failed(e.to_string(), e.retryable),
        }
        let client = match self.registries.registry(&access).await {
            Ok(c) => c,
            Err(e) => {
                return out.failed(format!("target registry {access}: {e}"), e.is_retryable())
            }
        };
        // The source's deadline, on the target's client.
        let destination = RepositoryLocation::new(
            client.with_deadline(source.client.deadline()),
            repository.clone(),
        );
        let copier = ImageCopier::new(CopyOptions {
            copy_referrers: replication.copy_referrers,
            recheck_source_tags: true,
            ..self.copy_options.clone()
        });
        let selector = Selector::Digest(action.digest.clone());
        let mut result = copier.copy(source, &selector, &destination, tags).await;
        if let (Err(CopyError::TargetRepositoryMissing { .. }), true) =
            (&result, replication.registry_creates_repository)
        {
            return out.failed(
                format!(
                    "target repository {repository} does not exist in {}/{} and rule {} leaves creating it to the registry, which did not: ECR creates a repository on push only where a repository creation template applied for CREATE_ON_PUSH covers its name (aws ecr create-repository-creation-template --prefix <prefix> --applied-for CREATE_ON_PUSH ...)",
                    access.account, access.region, replication.rule
                ),
                false,
            );
        }
        if let Err(CopyError::TargetRepositoryMissing { .. }) = &result {
            // Deleted since we last looked: forget it, create it if allowed, try once more.
            self.known_repositories
                .lock()
                .await
                .remove(&(access.clone(), repository.clone()));
            match self
                .ensure_repository(&ecr, &access, &repository, replication)
                .await
            {
                Ok(created) => out.created_repository |= created,
                Err(e) => return out.failed(e.to_string(), e.retryable),
            }
            result = copier.copy(source, &selector, &destination, tags).await;
        }
        match result {
            Ok(report) => {
                out.outcome = if report.manifests_copied == 0
                    && report.tags_set == 0
                    && report.referrers_copied == 0
                {
                    Outcome::UpToDate
                } else {
                    Outcome::Replicated
                };
                out.report = Some(report);
                out
            }
            Err(e) => {
                let retryable = e.is_retryable();
                out.failed(e.to_string(), retryable)
            }
        }
    }

    /// Makes sure the target repository exists; creates it when the rule allows.
    /// Returns whether it was created now.
    async fn ensure_repository(
        &self,
        ecr: &aws_sdk_ecr::Client,
        access: &Access,
        repository: &str,
        replication: &Replication,
    ) -> Result<bool, AwsError> {
        if replication.registry_creates_repository {
            // ECR's creation templates (CREATE_ON_PUSH) make it on the first push.
            return Ok(false);
        }
        let key = (access.clone(), repository.to_string());
        if self.known_repositories.lock().await.contains(&key) {
            return Ok(false);
        }
        let mut created = false;
        if !repositories::repository_exists(ecr, repository).await? {
            let Some(settings) = &replication.create_repository else {
                return Err(AwsError::permanent(
                    "ecr:DescribeRepositories",
                    format!(
                        "target repository {repository} does not exist in {}/{} and rule {} does not allow creating it (set create_repository)",
                        access.account, access.region, replication.rule
                    ),
                ));
            };
            created = repositories::create_repository(ecr, repository, settings).await?
                == RepositoryState::Created;
            if created {
                tracing::info!(account = %access.account, region = %access.region, repository, "target repository created");
            }
        }
        self.known_repositories.lock().await.insert(key);
        Ok(created)
    }

    /// Removes the deleted tag (or digest) from one destination. A tag is
    /// removed only while the target's tag points at the deleted digest:
    /// at another digest it belongs to a later push and is left alone.
    async fn delete_in(
        &self,
        source: &RepositoryLocation,
        action: &ImageAction,
        id: &ImageId,
        target: &Target,
    ) -> DestinationOutcome {
        let mut out = DestinationOutcome::new(target);
        let repository = match &target.repository {
            Ok(r) => r.clone(),
            Err(invalid) => return out.failed(invalid.to_string(), false),
        };
        let access = access_of(target);
        if let ImageId::Tag(tag) = id {
            let client = match self.registries.registry(&access).await {
                Ok(c) => c.with_deadline(source.client.deadline()),
                Err(e) => {
                    return out.failed(format!("target registry {access}: {e}"), e.is_retryable())
                }
            };
            match client.manifest_head(&repository, tag).await {
                Ok(None) => {
                    out.outcome = Outcome::AlreadyDeleted;
                    return out;
                }
                Ok(Some(head)) if head.digest.as_ref() != Some(&action.digest) => {
                    tracing::info!(
                        target_repository = %repository, tag, digest = %action.digest,
                        current = head.digest.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
                        "target tag points at another digest; left alone"
                    );
                    out.outcome = Outcome::TagMovedOn;
                    return out;
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    let retryable = e.is_retryable();
                    return out.failed(format!("target registry {access}: {e}"), retryable);
                }
            }
        }
        let ecr = self.registries.ecr(&access).await;
        match repositories::delete_image(&ecr, &repository, id).await {
            Ok(true) => out.outcome = Outcome::Deleted,
            Ok(false) => out.outcome = Outcome::AlreadyDeleted,
            Err(e) => return out.failed(e.to_string(), e.retryable),
        }
        out
    }
}

/// How long before an invocation's deadline the copy stops, to leave time
/// for the outcome line, the metrics and the answer: 30 s, or a quarter of
/// a short invocation.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// When the copy must stop for an invocation that ends in `remaining`.
pub fn copy_deadline(now: Instant, remaining: Duration) -> Instant {
    now + remaining.saturating_sub(DEADLINE_MARGIN.min(remaining / 4))
}

fn access_of(target: &Target) -> Access {
    Access {
        account: target.account.clone(),
        region: target.region.clone(),
        role_arn: target.role_arn.clone(),
        external_id: target.external_id.clone(),
    }
}

impl DestinationOutcome {
    fn new(target: &Target) -> Self {
        DestinationOutcome {
            account: target.account.clone(),
            region: target.region.clone(),
            repository: match &target.repository {
                Ok(r) => r.clone(),
                Err(e) => e.rendered.clone(),
            },
            outcome: Outcome::Failed,
            report: None,
            error: None,
            retryable: false,
            created_repository: false,
            loop_prevented: false,
            duration_ms: 0,
        }
    }

    /// Refused before anything was pushed; permanent: only a config change helps.
    fn looped(self, found: LoopDetected) -> Self {
        let mut out = self.failed(found.to_string(), false);
        out.loop_prevented = true;
        out
    }

    fn failed(mut self, error: String, retryable: bool) -> Self {
        self.outcome = Outcome::Failed;
        self.error = Some(error);
        self.retryable = retryable;
        self
    }
}

/// One structured line per destination: what users grep and alarm on.
fn log_outcome(action: &ImageAction, rule: &str, o: &DestinationOutcome) {
    let report = o.report.as_ref();
    let fields = (
        report.map_or(0, |r| r.blobs_uploaded),
        report.map_or(0, |r| r.blobs_mounted),
        report.map_or(0, |r| r.blobs_skipped),
        report.map_or(0, |r| r.bytes_uploaded),
    );
    let outcome = serde_json::to_value(o.outcome).ok();
    let outcome = outcome
        .as_ref()
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    if o.outcome == Outcome::Failed {
        tracing::error!(
            source_repository = %action.repository, digest = %action.digest, tag = %action.tag_list(),
            rule, target_account = %o.account, target_region = %o.region, target_repository = %o.repository,
            outcome, retryable = o.retryable, loop_prevented = o.loop_prevented, error = o.error.as_deref().unwrap_or(""),
            duration_ms = o.duration_ms, "replication failed"
        );
    } else {
        tracing::info!(
            source_repository = %action.repository, digest = %action.digest, tag = %action.tag_list(),
            rule, target_account = %o.account, target_region = %o.region, target_repository = %o.repository,
            outcome, blobs_uploaded = fields.0, blobs_mounted = fields.1, blobs_skipped = fields.2, bytes = fields.3,
            created_repository = o.created_repository, duration_ms = o.duration_ms, "replication"
        );
    }
}
