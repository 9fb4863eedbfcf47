//! Backfill: replicate the images that existed before ecr-bridge (or a new
//! rule) did. Push events only cover what is pushed from now on.
//!
//! A fan-out over the work queue, so that no registry is too large for one
//! invocation:
//! - `start` records a run ([`runs`]) and lists the source repositories
//!   page by page, enqueuing one listing step per repository the mapping
//!   routes ([`listing`]);
//! - each listing step pages DescribeImages, applies the rules' tag filters
//!   (and leaves ARCHIVED images), enqueues one work item per image, and
//!   near its invocation's deadline enqueues its own continuation instead
//!   of running on;
//! - each work item is an image action shaped like the ECR event
//!   ([`crate::work_queue`] owns both formats), so the replicator handles
//!   it as a push: a destination that already has the image costs one HEAD;
//! - with the mapping's `sources` (a hub), `start` enqueues one repositories
//!   step per source instead, each listed through that source's role, and
//!   every step names its source ([`sources`]);
//! - every step and item adds to the run's durable counts, which `status`
//!   and `ecr-bridge backfill --wait` read.
//!
//! A second `start` while a run of the same scope is going joins it; after
//! it finished cleanly under the same mapping it enqueues nothing (`rerun`
//! forces a new run). `check` only counts, in one invocation, and says
//! whether it got through before its deadline ([`check`]).

mod check;
mod listing;
pub mod runs;
mod sources;
mod summary;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::AwsError;
use crate::mapping_store::{MappingError, MappingStore};
use crate::registries::{EcrRegistries, SourceRole};
use crate::run_table::now_ms;
use crate::work_queue::{Listing, QueueDepth, RunId, SourceKey, WorkQueue};
use runs::{BackfillRun, Began, RunCounts, RunStore};
use sources::SourceEcr;
pub use summary::{BackfillSummary, ItemResult, RunInfo, RunState};

/// A run whose counts say it is unfinished but whose queue is empty and
/// which nobody has updated for this long is over: a listing step or work
/// item went to the dead-letter queue without counting.
const STALE_AFTER: Duration = Duration::from_secs(300);

/// What an operator asks for (`{"backfill": {...}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// `start` (default) starts or joins a run; `check` only counts;
    /// `status` reports the current run.
    #[serde(default)]
    pub action: BackfillAction,
    /// Only these source repositories (default: every repository a rule routes).
    #[serde(default)]
    pub repositories: Vec<String>,
    /// With `start`: a new run even if the last one of this scope finished
    /// cleanly under the same mapping.
    #[serde(default)]
    pub rerun: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillAction {
    #[default]
    Start,
    Check,
    Status,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("listing source images: {0}")]
    Source(AwsError),
    #[error("the work queue: {0}")]
    Queue(AwsError),
    #[error("the backfill run table: {0}")]
    Runs(AwsError),
    #[error("backfill needs a work queue: set BACKFILL_QUEUE_URL (the template does)")]
    NoQueue,
    #[error("backfill needs a run table: set BACKFILL_TABLE (the template does)")]
    NoRunTable,
    #[error("source repository {0} does not exist")]
    UnknownRepository(String),
    #[error("backfill run {id} over {} is still going ({state:?}): wait for it (`status`) or start the same scope to join it", describe_scope(scope))]
    Busy {
        id: RunId,
        scope: Vec<String>,
        state: RunState,
    },
    #[error("the function's own region (AWS_REGION): {0}")]
    HomeRegion(ecr_bridge::ids::RegionError),
}

fn describe_scope(scope: &[String]) -> String {
    if scope.is_empty() {
        "every routed repository".to_string()
    } else {
        format!("repositories {}", scope.join(", "))
    }
}

impl BackfillError {
    pub fn is_retryable(&self) -> bool {
        match self {
            BackfillError::Mapping(e) => e.is_retryable(),
            BackfillError::Source(e) | BackfillError::Queue(e) | BackfillError::Runs(e) => {
                e.retryable
            }
            // The other run ends by itself; asking again later can succeed.
            BackfillError::Busy { .. } => true,
            BackfillError::NoQueue
            | BackfillError::NoRunTable
            | BackfillError::UnknownRepository(_)
            | BackfillError::HomeRegion(_) => false,
        }
    }
}

/// The backfill: starts runs, runs their listing steps, counts their work
/// items, reports.
pub struct Backfill {
    mapping: Arc<MappingStore>,
    registries: Arc<EcrRegistries>,
    source_role: SourceRole,
    queue: Option<Arc<dyn WorkQueue>>,
    runs: Option<Arc<dyn RunStore>>,
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
            runs: None,
        }
    }

    /// Where listing steps and work items go; `start` and `status` need it.
    pub fn with_queue(mut self, queue: Arc<dyn WorkQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Where runs are recorded; `start` and `status` need it.
    pub fn with_runs(mut self, runs: Arc<dyn RunStore>) -> Self {
        self.runs = Some(runs);
        self
    }

    fn queue(&self) -> Result<&dyn WorkQueue, BackfillError> {
        self.queue.as_deref().ok_or(BackfillError::NoQueue)
    }

    fn runs(&self) -> Result<&dyn RunStore, BackfillError> {
        self.runs.as_deref().ok_or(BackfillError::NoRunTable)
    }

    fn lister<'a>(
        &'a self,
        config: &'a ecr_bridge::mapping::MappingConfig,
        source: &'a SourceEcr,
        run: &'a RunId,
        deadline: Option<Instant>,
    ) -> Result<listing::Lister<'a>, BackfillError> {
        Ok(listing::Lister {
            config,
            ecr: &source.ecr,
            region: &source.region,
            source: source.key.clone(),
            queue: self.queue()?,
            runs: self.runs()?,
            run,
            clock: crate::deadline::PageClock::new(deadline),
        })
    }

    /// Runs a backfill request; listing stops at `deadline` and hands the
    /// rest to the queue (`start`), or reports what it covered (`check`).
    pub async fn run(
        &self,
        request: &BackfillRequest,
        deadline: Option<Instant>,
    ) -> Result<BackfillSummary, BackfillError> {
        let started = Instant::now();
        let mut summary = match request.action {
            BackfillAction::Status => self.status().await?,
            BackfillAction::Start => self.start(request, deadline).await?,
            BackfillAction::Check => self.check(request, deadline).await?,
        };
        summary.duration_ms = started.elapsed().as_millis() as u64;
        let c = &summary.counts;
        tracing::info!(
            action = ?summary.action, run = summary.run.as_ref().map(|r| r.id.to_string()),
            state = ?summary.run.as_ref().map(|r| r.state), joined = summary.run.as_ref().is_some_and(|r| r.joined),
            repositories_matched = c.repositories_matched, images_found = c.images_found, filtered = c.filtered,
            archived = c.archived, enqueued = c.enqueued, copied = c.copied, already_present = c.already_present,
            failed = c.failed, missing = summary.missing, complete = summary.complete,
            duration_ms = summary.duration_ms, outcome = "backfill", "backfill"
        );
        Ok(summary)
    }

    /// The current run and the queue.
    async fn status(&self) -> Result<BackfillSummary, BackfillError> {
        let depth = self.queue()?.depth().await.map_err(BackfillError::Queue)?;
        let run = self.runs()?.current().await.map_err(BackfillError::Runs)?;
        let mut summary = BackfillSummary::new(BackfillAction::Status);
        summary.queue = Some(depth);
        if let Some(run) = run {
            summary.run = Some(info(&run, state_of(&run, Some(depth)), false));
            summary.counts = run.counts;
        }
        Ok(summary)
    }

    /// Starts a run, or joins the one going (or done) for the same scope.
    async fn start(
        &self,
        request: &BackfillRequest,
        deadline: Option<Instant>,
    ) -> Result<BackfillSummary, BackfillError> {
        let queue = self.queue()?;
        let runs = self.runs()?;
        let (config, mapping_digest) = self.mapping.current().await?;
        let mut scope = request.repositories.clone();
        scope.sort();
        scope.dedup();
        let sources = self.source_ecrs(&config).await?;
        let named = self.named_in(&sources, &scope).await?;

        // Two starts at once: the conditional write lets one win; the other
        // reads again and joins it.
        let mut attempts = 0;
        let run = loop {
            attempts += 1;
            let current = runs.current().await.map_err(BackfillError::Runs)?;
            if let Some(current) = &current {
                let depth = queue.depth().await.map_err(BackfillError::Queue)?;
                let state = state_of(current, Some(depth));
                let clean_same = state == RunState::Finished
                    && !request.rerun
                    && current.scope == scope
                    && current.mapping == mapping_digest
                    && current.counts.failed == 0
                    && current.counts.enqueue_failed == 0
                    && current.counts.items_done() >= current.counts.enqueued;
                if state != RunState::Finished && current.scope != scope {
                    return Err(BackfillError::Busy {
                        id: current.id.clone(),
                        scope: current.scope.clone(),
                        state,
                    });
                }
                if state != RunState::Finished || clean_same {
                    let mut summary = BackfillSummary::new(BackfillAction::Start);
                    summary.counts = current.counts;
                    summary.run = Some(info(current, state, true));
                    summary.queue = Some(depth);
                    return Ok(summary);
                }
            }
            let now = now_ms();
            let run = BackfillRun {
                id: RunId::new(),
                scope: scope.clone(),
                mapping: mapping_digest.clone(),
                started_at_ms: now,
                updated_at_ms: now,
                // The listing this invocation does now is the first step.
                counts: RunCounts {
                    listings_open: 1,
                    ..RunCounts::default()
                },
            };
            match runs
                .begin(&run, current.as_ref().map(|c| &c.id))
                .await
                .map_err(BackfillError::Runs)?
            {
                Began::New(run) => break run,
                Began::Lost if attempts < 3 => continue,
                Began::Lost => {
                    return Err(BackfillError::Runs(AwsError::transient(
                        "dynamodb:PutItem",
                        "the backfill run changed under three starts in a row",
                    )))
                }
            }
        };
        tracing::info!(run = %run.id, scope = ?run.scope, "backfill run started");
        let first = &sources[0];
        if !scope.is_empty() {
            // Each name was found in some source, so `named` is not empty.
            for (n, (i, repositories)) in named.iter().enumerate() {
                self.lister(&config, &sources[*i], &run.id, deadline)?
                    .named(repositories, n + 1 == named.len())
                    .await?;
            }
        } else if first.key.is_none() {
            self.lister(&config, first, &run.id, deadline)?
                .repositories(None)
                .await?;
        } else {
            let keys: Vec<SourceKey> = sources.iter().filter_map(|s| s.key.clone()).collect();
            self.lister(&config, first, &run.id, deadline)?
                .sources(&keys)
                .await?;
        }
        let now = runs.current().await.map_err(BackfillError::Runs)?;
        let mut summary = BackfillSummary::new(BackfillAction::Start);
        let stored = now.filter(|r| r.id == run.id).unwrap_or(run);
        summary.counts = stored.counts;
        summary.run = Some(info(&stored, state_of(&stored, None), false));
        Ok(summary)
    }

    /// Runs one listing step from the queue.
    pub async fn list(
        &self,
        step: &crate::work_queue::ListingStep,
        deadline: Option<Instant>,
    ) -> Result<(), BackfillError> {
        let config = self.mapping.get().await?;
        let key = match &step.listing {
            Listing::Repositories { source, .. } | Listing::Images { source, .. } => source,
        };
        let source = match key {
            None => self.home_ecr().await?,
            Some(key) => match config.source_for(&key.account, &key.region) {
                Ok(Some(listed)) => self.listed_ecr(listed).await,
                Ok(None) | Err(_) => {
                    // The mapping dropped this source since the step was enqueued.
                    tracing::info!(run = %step.run, account = %key.account, region = %key.region, "no longer a source; not listed");
                    let done = RunCounts {
                        listings_open: -1,
                        ..RunCounts::default()
                    };
                    self.runs()?
                        .add(&step.run, &done)
                        .await
                        .map_err(BackfillError::Runs)?;
                    return Ok(());
                }
            },
        };
        self.lister(&config, &source, &step.run, deadline)?
            .step(&step.listing)
            .await
    }

    /// Counts one work item of run `run`.
    pub async fn record(&self, run: &RunId, result: ItemResult) -> Result<(), BackfillError> {
        let mut counts = RunCounts::default();
        match result {
            ItemResult::Copied => counts.copied = 1,
            ItemResult::AlreadyPresent => counts.already_present = 1,
            ItemResult::Skipped => counts.skipped = 1,
            ItemResult::Failed => counts.failed = 1,
        }
        let counted = self
            .runs()?
            .add(run, &counts)
            .await
            .map_err(BackfillError::Runs)?;
        if !counted {
            tracing::info!(run = %run, "work item of an earlier backfill run; not counted");
        }
        Ok(())
    }
}

fn info(run: &BackfillRun, state: RunState, joined: bool) -> RunInfo {
    RunInfo {
        id: run.id.clone(),
        state,
        scope: run.scope.clone(),
        started_at_ms: run.started_at_ms,
        updated_at_ms: run.updated_at_ms,
        joined,
    }
}

/// Where `run` is. Its counts say whether work is open; an empty queue and
/// no update for [`STALE_AFTER`] say the open work was lost (a step or item
/// in the dead-letter queue). Without a queue reading, the counts decide.
fn state_of(run: &BackfillRun, depth: Option<QueueDepth>) -> RunState {
    let c = &run.counts;
    let open = c.listings_open > 0 || c.items_done() < c.enqueued;
    let queue_empty = depth.is_some_and(|d| d.waiting + d.in_flight == 0);
    let stale = now_ms().saturating_sub(run.updated_at_ms) > STALE_AFTER.as_millis() as u64;
    if !open || (queue_empty && stale) {
        RunState::Finished
    } else if c.listings_open > 0 {
        RunState::Listing
    } else {
        RunState::Copying
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::SourceImage;
    use aws_sdk_ecr::types::{ImageDetail, ImageStatus};

    #[test]
    fn given_sdk_image_details_when_classified_then_archived_and_restoring_images_are_marked() {
        let image = |status: Option<ImageStatus>| {
            SourceImage::from_detail(
                &ImageDetail::builder()
                    .image_digest(format!("sha256:{}", "ef".repeat(32)))
                    .image_tags("v1")
                    .set_image_status(status)
                    .build(),
            )
        };
        assert!(!image(Some(ImageStatus::Active)).archived);
        assert!(!image(None).archived);
        assert!(image(Some(ImageStatus::Archived)).archived);
        assert!(image(Some(ImageStatus::Activating)).archived);
    }

    #[test]
    fn given_a_summary_when_serialized_then_counts_are_top_level_fields_and_old_answers_still_parse(
    ) {
        let mut summary = BackfillSummary::new(BackfillAction::Check);
        summary.counts.archived = 2;
        summary.missing = 3;
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!(value["archived"], 2);
        assert_eq!(value["missing"], 3);
        assert_eq!(value["complete"], true);
        assert!(value.get("run").is_none(), "{value}");
        // A replicator deployed before a field existed answers without it.
        let mut old = value.clone();
        for field in ["archived", "complete", "copied", "listings_open"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let parsed: BackfillSummary = serde_json::from_value(old).unwrap();
        assert_eq!(parsed.counts.archived, 0);
        assert!(parsed.complete);
    }

    #[test]
    fn given_backfill_requests_when_parsed_then_defaults_and_unknown_fields_refused() {
        let r: BackfillRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.action, BackfillAction::Start);
        assert!(r.repositories.is_empty());
        assert!(!r.rerun);
        let r: BackfillRequest =
            serde_json::from_str(r#"{"action":"check","repositories":["a"],"rerun":true}"#)
                .unwrap();
        assert_eq!(r.action, BackfillAction::Check);
        assert!(r.rerun);
        let e = serde_json::from_str::<BackfillRequest>(r#"{"acton":"check"}"#).unwrap_err();
        assert!(e.to_string().contains("acton"), "{e}");
        let e = serde_json::from_str::<BackfillRequest>(r#"{"action":"go"}"#).unwrap_err();
        assert!(e.to_string().contains("go"), "{e}");
    }

    fn run(counts: RunCounts, idle: Duration) -> BackfillRun {
        BackfillRun {
            id: RunId::new(),
            scope: vec![],
            mapping: String::new(),
            started_at_ms: 0,
            updated_at_ms: now_ms() - idle.as_millis() as u64,
            counts,
        }
    }

    #[test]
    fn given_run_counts_and_queue_readings_when_judged_then_open_work_keeps_a_run_going_until_lost()
    {
        let listing = RunCounts {
            listings_open: 2,
            enqueued: 10,
            ..RunCounts::default()
        };
        let copying = RunCounts {
            enqueued: 10,
            copied: 6,
            failed: 1,
            ..RunCounts::default()
        };
        let done = RunCounts {
            enqueued: 10,
            copied: 9,
            skipped: 1,
            ..RunCounts::default()
        };
        let busy = Some(QueueDepth {
            waiting: 3,
            in_flight: 1,
        });
        let empty = Some(QueueDepth::default());
        let recent = Duration::from_secs(10);
        let long_ago = STALE_AFTER + Duration::from_secs(1);
        for (counts, idle, depth, expected) in [
            (listing, recent, busy, RunState::Listing),
            (listing, long_ago, busy, RunState::Listing),
            // An empty queue right after a start may be SQS's approximation.
            (listing, recent, empty, RunState::Listing),
            (copying, recent, busy, RunState::Copying),
            (copying, long_ago, None, RunState::Copying),
            // Nothing queued and nothing heard for long: the rest was lost.
            (copying, long_ago, empty, RunState::Finished),
            (listing, long_ago, empty, RunState::Finished),
            (done, recent, busy, RunState::Finished),
        ] {
            assert_eq!(
                state_of(&run(counts, idle), depth),
                expected,
                "{counts:?} idle {idle:?} queue {depth:?}"
            );
        }
    }
}
