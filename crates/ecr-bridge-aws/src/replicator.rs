//! The image replicator's use case: an ECR image action in, every
//! destination of the matching rule brought up to date.
//!
//! Idempotent by digest: a duplicate event finds the target complete and
//! moves nothing; an out-of-order event never moves a tag backwards, because
//! a tag is only set while the source tag still points at the event's digest
//! (asked again immediately before each tag PUT); a late delete never removes
//! a re-pushed image, because a delete waits for the source to lack the tag
//! and removes a target tag only while it points at the event's digest.

mod completion;
mod destination;
mod loop_guard;
mod report;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use ecr_bridge::copy::CopyOptions;
use ecr_bridge::mapping::{ImageDecision, MappingConfig};
use ecr_bridge::reference::Selector;
use ecr_bridge::registry::{RegistryClient, RegistryError, Repository};
use tokio::sync::Mutex;

use crate::backfill::Backfill;
use crate::event_bus::{Announced, EventBus};
use crate::image_action::{ActionKind, ImageAction};
use crate::mapping_store::{MappingError, MappingStore};
use crate::registries::{EcrRegistries, RegistryAccess, SourceRole};
use crate::repositories::ImageId;
use crate::work_queue::WorkQueue;
pub use completion::{completion_event, DELETED, FAILED, REPLICATED, UP_TO_DATE};
use report::log_outcome;
pub use report::{ActionReport, DestinationOutcome, DestinationStatus};

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
    /// The mapping lists its sources and the event's registry is not one
    /// (a spoke sending before it was added, or an account allowed on the
    /// hub's bus that should not be).
    #[error(transparent)]
    NotASource(#[from] ecr_bridge::mapping::NotASource),
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
            ReplicationError::NotASource(_) => false,
            ReplicationError::Destinations { retryable, .. } => *retryable,
        }
    }
}

pub struct Replicator {
    mapping: Arc<MappingStore>,
    registries: Arc<EcrRegistries>,
    copy_options: CopyOptions,
    source_role: SourceRole,
    /// Target repositories seen to exist: checked once per container, not per event.
    known_repositories: Mutex<HashSet<(RegistryAccess, String)>>,
    /// The function answers backfill requests too; the backfill shares the
    /// mapping and the registries (with their cached clients and tokens).
    backfill: Backfill,
    /// Where completion events go; none: not announced.
    event_bus: Option<Arc<dyn EventBus>>,
}

impl Replicator {
    pub fn new(
        mapping: MappingStore,
        registries: EcrRegistries,
        copy_options: CopyOptions,
        source_role: SourceRole,
    ) -> Self {
        let mapping = Arc::new(mapping);
        let registries = Arc::new(registries);
        Replicator {
            backfill: Backfill::new(mapping.clone(), registries.clone(), source_role.clone()),
            mapping,
            registries,
            copy_options,
            source_role,
            known_repositories: Mutex::new(HashSet::new()),
            event_bus: None,
        }
    }

    /// Where completion events go (`EVENT_BUS_NAME`).
    pub fn with_event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.event_bus = Some(bus);
        self
    }

    /// Puts one completion event per destination on the bus, if there is
    /// one; `trigger` is the id of the event or work item that caused them.
    /// Best effort: what was not put is counted, the replication stands.
    pub async fn announce(
        &self,
        action: &ImageAction,
        rule: &str,
        outcomes: &[DestinationOutcome],
        trigger: Option<&str>,
    ) -> Announced {
        let Some(bus) = &self.event_bus else {
            return Announced::default();
        };
        let events: Vec<_> = outcomes
            .iter()
            .map(|o| completion_event(action, rule, o, trigger))
            .collect();
        bus.put(&events).await
    }

    /// Where the backfill records its runs.
    pub fn with_backfill_runs(mut self, runs: Arc<dyn crate::backfill::runs::RunStore>) -> Self {
        self.backfill = self.backfill.with_runs(runs);
        self
    }

    /// Where the backfill puts its work items.
    pub fn with_backfill_queue(mut self, queue: Arc<dyn WorkQueue>) -> Self {
        self.backfill = self.backfill.with_queue(queue);
        self
    }

    pub fn backfill(&self) -> &Backfill {
        &self.backfill
    }

    pub async fn handle(&self, action: &ImageAction) -> Result<ActionReport, ReplicationError> {
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
    ) -> Result<ActionReport, ReplicationError> {
        let config = self.mapping.get().await?;
        let access = self.source_access(&config, action)?;
        // The rule follows the repository; each tag passes its filter or not.
        // The source tags are asked again before each tag PUT (the copy's
        // `recheck_source_tags`), so a tag moved on meanwhile is left alone.
        let (replication, tags) =
            match config.decide_image(action.repository.as_str(), &action.tags) {
                ImageDecision::NoMatchingRule => return Ok(ActionReport::NoRule),
                ImageDecision::TagFiltered { rule, reason, .. } => {
                    return Ok(ActionReport::Filtered {
                        rule,
                        reason: reason.to_string(),
                    })
                }
                ImageDecision::Replicate { replication, tags } => (replication, tags),
            };
        if action.kind == ActionKind::Delete && !replication.propagate_deletes {
            return Ok(ActionReport::DeleteNotPropagated {
                rule: replication.rule,
            });
        }

        let source = self.source_location(access, action, deadline).await?;
        let delete_id = match action.tags.first() {
            Some(t) => ImageId::Tag(t.clone()),
            None => ImageId::Digest(action.digest.to_string()),
        };
        if action.kind == ActionKind::Delete {
            if let Some(reference) = self.source_still_has(&source, action, &delete_id).await? {
                tracing::info!(
                    repository = %action.repository, reference = %reference, digest = %action.digest,
                    outcome = "source_still_has",
                    "the source has the deleted image again (a later push); nothing deleted"
                );
                return Ok(ActionReport::SourceStillHas {
                    rule: replication.rule,
                    reference,
                });
            }
        }

        let jobs = replication.destinations.iter().map(|target| async {
            let started = Instant::now();
            // A name the mapping could not render fails its destination
            // before anything else (the loop guard needs a name too).
            let mut outcome = match (&target.repository, action.kind) {
                (Err(invalid), _) => {
                    DestinationOutcome::new(target).failed(invalid.to_string(), false)
                }
                (Ok(repository), ActionKind::Push) => {
                    match loop_guard::check(&config, action, target, &tags) {
                        Some(looped) => DestinationOutcome::new(target).looped(looped),
                        None => {
                            self.push_to(&source, action, &tags, &replication, target, repository)
                                .await
                        }
                    }
                }
                (Ok(repository), ActionKind::Delete) => {
                    self.delete_in(&source, action, &delete_id, target, repository)
                        .await
                }
            };
            outcome.duration_ms = started.elapsed().as_millis() as u64;
            log_outcome(action, &replication.rule, &outcome);
            outcome
        });
        let outcomes: Vec<DestinationOutcome> = futures_util::future::join_all(jobs).await;

        let failed: Vec<&DestinationOutcome> = outcomes
            .iter()
            .filter(|o| o.outcome == DestinationStatus::Failed)
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
        Ok(ActionReport::Done {
            rule: replication.rule,
            destinations: outcomes,
        })
    }

    /// How to read the event's registry: the role the mapping's `sources`
    /// give it, else the deployment's source role; refused when the
    /// mapping lists sources and not this one.
    fn source_access(
        &self,
        config: &MappingConfig,
        action: &ImageAction,
    ) -> Result<RegistryAccess, ReplicationError> {
        Ok(match config.source_for(&action.account, &action.region)? {
            Some(listed) => listed.access(self.source_role.assume.as_ref()),
            None => action.source(&self.source_role),
        })
    }

    async fn source_location(
        &self,
        access: RegistryAccess,
        action: &ImageAction,
        deadline: Option<Instant>,
    ) -> Result<Repository, ReplicationError> {
        let client: RegistryClient =
            self.registries
                .registry(&access)
                .await
                .map_err(|source| ReplicationError::Source {
                    access: access.to_string(),
                    source,
                })?;
        Ok(Repository::new(
            client.with_deadline(deadline),
            action.repository.as_str(),
        ))
    }

    /// What the source holds under a deleted tag or digest, if anything:
    /// a delete processed after a re-push (out of order, or a retry) finds
    /// the tag there again and must not remove the new image downstream.
    async fn source_still_has(
        &self,
        source: &Repository,
        action: &ImageAction,
        id: &ImageId,
    ) -> Result<Option<String>, ReplicationError> {
        let (reference, at) = match id {
            ImageId::Tag(t) => (t.as_str(), Selector::Tag(t.clone())),
            ImageId::Digest(d) => (d.as_str(), Selector::Digest(action.digest.clone())),
        };
        let head = source
            .manifest_head(&at)
            .await
            .map_err(|e| ReplicationError::Source {
                access: source.client().endpoint().authority(),
                source: e,
            })?;
        Ok(head.map(|h| match (id, h.digest) {
            (ImageId::Tag(t), Some(d)) => format!("{t}@{d}"),
            _ => reference.to_string(),
        }))
    }
}
