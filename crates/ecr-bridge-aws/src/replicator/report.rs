//! What the replicator reports: per destination ([`DestinationOutcome`],
//! one structured log line each) and per action ([`ActionReport`]).

use ecr_bridge::copy::CopyReport;
use ecr_bridge::ids::{AccountId, Region};
use ecr_bridge::mapping::Target;
use serde::Serialize;

use super::loop_guard::LoopDetected;
use crate::image_action::ImageAction;

/// The result for one destination, logged as one structured line.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationOutcome {
    pub account: AccountId,
    pub region: Region,
    pub repository: String,
    pub outcome: DestinationStatus,
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

/// Where one destination stands after the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationStatus {
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
pub enum ActionReport {
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

impl DestinationOutcome {
    pub(super) fn new(target: &Target) -> Self {
        DestinationOutcome {
            account: target.access.account.clone(),
            region: target.access.region.clone(),
            repository: match &target.repository {
                Ok(r) => r.clone(),
                Err(e) => e.rendered.clone(),
            },
            outcome: DestinationStatus::Failed,
            report: None,
            error: None,
            retryable: false,
            created_repository: false,
            loop_prevented: false,
            duration_ms: 0,
        }
    }

    /// Refused before anything was pushed; permanent: only a config change helps.
    pub(super) fn looped(self, found: LoopDetected) -> Self {
        let mut out = self.failed(found.to_string(), false);
        out.loop_prevented = true;
        out
    }

    pub(super) fn failed(mut self, error: String, retryable: bool) -> Self {
        self.outcome = DestinationStatus::Failed;
        self.error = Some(error);
        self.retryable = retryable;
        self
    }
}

/// One structured line per destination: what users grep and alarm on.
pub(super) fn log_outcome(action: &ImageAction, rule: &str, o: &DestinationOutcome) {
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
    if o.outcome == DestinationStatus::Failed {
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
