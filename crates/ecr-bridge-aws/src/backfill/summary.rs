//! What a backfill answers: the summary of a run or a check, and where a
//! run is; and what a work item counts as in its run.

use serde::{Deserialize, Serialize};

use super::runs::RunCounts;
use super::BackfillAction;
use crate::work_queue::{QueueDepth, RunId};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Listing steps are open: more work items may come.
    Listing,
    /// Listing is done; work items are waiting or running.
    Copying,
    Finished,
}

/// The run a `start` or `status` answers about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RunInfo {
    pub id: RunId,
    pub state: RunState,
    pub scope: Vec<String>,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
    /// This `start` joined a run that was going (or had finished cleanly)
    /// instead of starting one.
    #[serde(default)]
    pub joined: bool,
}

/// Counts for the operator. For a run (`start`, `status`): `images_found` =
/// `filtered` + `archived` + `enqueued` + `enqueue_failed`, and once
/// finished `enqueued` = `copied` + `already_present` + `skipped` + `failed`
/// (+ items lost to the dead-letter queue). For a `check`: `enqueued` is 0
/// and the images that would be are `already_present` or `missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSummary {
    pub action: BackfillAction,
    #[serde(flatten)]
    pub counts: RunCounts,
    /// `check`: images some destination lacks.
    #[serde(default)]
    pub missing: i64,
    /// `check`: false when the deadline came first (the counts cover part).
    #[serde(default = "yes")]
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueDepth>,
    pub duration_ms: u64,
}

fn yes() -> bool {
    true
}

impl BackfillSummary {
    pub(super) fn new(action: BackfillAction) -> Self {
        BackfillSummary {
            action,
            counts: RunCounts::default(),
            missing: 0,
            complete: true,
            run: None,
            queue: None,
            duration_ms: 0,
        }
    }

    /// Work items enqueued that never reported back (in the dead-letter
    /// queue, or lost): failures too, once the run has finished.
    pub fn unaccounted(&self) -> i64 {
        (self.counts.enqueued - self.counts.items_done()).max(0)
    }
}

/// What became of one work item of a run, counted in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemResult {
    /// Some destination received it.
    Copied,
    /// Every destination had it.
    AlreadyPresent,
    /// No longer routed, filtered or ignored when handled.
    Skipped,
    /// Failed for good (a retry cannot help).
    Failed,
}
