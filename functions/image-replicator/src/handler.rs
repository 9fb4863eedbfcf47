//! One invocation: parse the event, replicate, report (log line per
//! destination, EMF metrics), and fail the invocation when anything failed so
//! Lambda retries it and, in the end, hands it to the on-failure destination.

use std::time::Instant;

use ecr_bridge_aws::backfill::{BackfillError, ItemResult};
use ecr_bridge_aws::emf::MetricSet;
use ecr_bridge_aws::replicator::{
    ActionReport, DestinationOutcome, DestinationStatus, ReplicationError, Replicator,
};
use ecr_bridge_aws::work_queue::EventError;
use serde_json::{json, Value};

use crate::config::Config;
use crate::event::{self, Incoming, QueuedItem};

/// Why an invocation failed. The message starts with whether a retry can
/// help, for whoever reads the on-failure destination.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("permanent: {0} (the event cannot be replicated as sent)")]
    InvalidEvent(#[from] EventError),
    #[error("{}: {source}", if source.is_retryable() { "transient" } else { "permanent" })]
    Replication {
        #[from]
        source: ReplicationError,
    },
    #[error("{}: backfill: {source}", if source.is_retryable() { "transient" } else { "permanent" })]
    Backfill {
        #[from]
        source: BackfillError,
    },
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::InvalidEvent(_) => false,
            HandlerError::Replication { source } => source.is_retryable(),
            HandlerError::Backfill { source } => source.is_retryable(),
        }
    }
}

pub async fn handle(
    replicator: &Replicator,
    config: &Config,
    payload: Value,
) -> Result<Value, HandlerError> {
    handle_until(replicator, config, payload, None).await
}

/// One invocation whose copies stop at `deadline` (see
/// [`ecr_bridge_aws::deadline::invocation_deadline`]) with a transient failure instead of running
/// into Lambda's timeout, which would leave no outcome line and no metric.
pub async fn handle_until(
    replicator: &Replicator,
    config: &Config,
    payload: Value,
    deadline: Option<Instant>,
) -> Result<Value, HandlerError> {
    let mut metrics =
        MetricSet::new(&config.metrics_namespace).dimension("Function", "image-replicator");
    let result = run(replicator, payload, deadline, &mut metrics).await;
    metrics.flush();
    result
}

async fn run(
    replicator: &Replicator,
    payload: Value,
    deadline: Option<Instant>,
    metrics: &mut MetricSet,
) -> Result<Value, HandlerError> {
    match event::parse(&payload) {
        Ok(Incoming::Backfill(request)) => {
            let summary = replicator
                .backfill()
                .run(&request, deadline)
                .await
                .inspect_err(|e| {
                    tracing::error!(error = %e, retryable = e.is_retryable(), outcome = "failed", "backfill failed");
                })?;
            Ok(json!({"result": "backfill", "summary": summary}))
        }
        Ok(Incoming::Queued(items)) => Ok(run_queued(replicator, items, deadline, metrics).await),
        Ok(other) => {
            // EventBridge's id of the event: what a completion event names as its trigger.
            let trigger = payload.get("id").and_then(Value::as_str);
            Ok(run_one(replicator, other, trigger, deadline, metrics)
                .await?
                .0)
        }
        Err(e) => {
            tracing::error!(error = %e, outcome = "invalid_event", "event rejected");
            metrics.count("EventsInvalid", 1);
            Err(e.into())
        }
    }
}

/// Backfill work items and listing steps from SQS, one after another (the
/// event source mapping sends one per invocation; more is fine). Only a
/// failure a retry can fix goes back to the queue (`batchItemFailures`),
/// and from there to its dead-letter queue once retries run out. A
/// permanent failure is logged, counted in its run and dropped: retrying
/// cannot help, and a new run (`rerun`) picks the image up once fixed.
async fn run_queued(
    replicator: &Replicator,
    items: Vec<QueuedItem>,
    deadline: Option<Instant>,
    metrics: &mut MetricSet,
) -> Value {
    let mut failures = Vec::new();
    let (mut done, mut dropped) = (0u64, 0u64);
    for item in items {
        let message_id = item.message_id;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Out of time: back to the queue untouched, for the next receive.
            tracing::warn!(
                message_id,
                outcome = "deferred",
                "invocation deadline near; work item returned to the queue"
            );
            failures.push(json!({ "itemIdentifier": message_id }));
            continue;
        }
        let result = match item.body {
            Ok(Incoming::Listing(step)) => {
                metrics.count("BackfillListingSteps", 1);
                replicator
                    .backfill()
                    .list(&step, deadline)
                    .await
                    .map(|()| None)
                    .map_err(HandlerError::from)
            }
            Ok(body) => run_one(replicator, body, Some(&message_id), deadline, metrics)
                .await
                .map(|(_, result)| Some(result)),
            Err(e) => {
                tracing::error!(message_id, error = %e, outcome = "invalid_event", "work item rejected");
                metrics.count("EventsInvalid", 1);
                Err(e.into())
            }
        };
        let counted = match &result {
            Ok(result) => *result,
            Err(e) if e.is_retryable() => None,
            Err(_) => Some(ItemResult::Failed),
        };
        if let (Some(run), Some(counted)) = (&item.run, counted) {
            // The copy stands whatever the count: a lost count only makes
            // `status` wait for the queue to drain instead.
            if let Err(e) = replicator.backfill().record(run, counted).await {
                tracing::warn!(message_id, run = %run, error = %e, "work item not counted in its backfill run");
                metrics.count("BackfillCountsLost", 1);
            }
        }
        match result {
            Ok(_) => done += 1,
            Err(e) if e.is_retryable() => failures.push(json!({ "itemIdentifier": message_id })),
            Err(e) => {
                tracing::error!(message_id, error = %e, outcome = "dropped", "work item failed for good; not retried");
                dropped += 1;
            }
        }
    }
    json!({
        "batchItemFailures": failures,
        "done": done,
        "dropped": dropped,
    })
}

/// One image action: the answer, and what it counts as in a backfill run.
/// `trigger` is the id of the event or work item (for completion events).
async fn run_one(
    replicator: &Replicator,
    incoming: Incoming,
    trigger: Option<&str>,
    deadline: Option<Instant>,
    metrics: &mut MetricSet,
) -> Result<(Value, ItemResult), HandlerError> {
    let action = match incoming {
        Incoming::Action(a) => a,
        Incoming::Ignored(reason) => {
            tracing::debug!(reason, outcome = "ignored", "event ignored");
            metrics.count("EventsIgnored", 1);
            return Ok((
                json!({"result": "ignored", "reason": reason}),
                ItemResult::Skipped,
            ));
        }
        Incoming::Backfill(_) | Incoming::Queued(_) | Incoming::Listing(_) => {
            // parse_image_action never yields these.
            return Err(EventError::Shape("expected an ECR Image Action".into()).into());
        }
    };
    match replicator.handle_until(&action, deadline).await {
        Ok(handled) => {
            match &handled {
                ActionReport::NoRule => {
                    tracing::info!(repository = %action.repository, outcome = "no_rule", "no mapping rule matches; nothing to do");
                    metrics.count("EventsUnmapped", 1);
                }
                ActionReport::Filtered { rule, reason } => {
                    tracing::info!(repository = %action.repository, rule, reason, outcome = "filtered", "tag filter refused the push");
                    metrics.count("EventsFiltered", 1);
                }
                ActionReport::DeleteNotPropagated { rule } => {
                    tracing::info!(repository = %action.repository, rule, outcome = "delete_not_propagated", "rule does not propagate deletes");
                    metrics.count("EventsIgnored", 1);
                }
                ActionReport::SourceStillHas { rule, reference } => {
                    tracing::info!(repository = %action.repository, rule, reference, outcome = "source_still_has", "the source has the deleted image again; nothing deleted");
                    metrics.count("DeletesSkipped", 1);
                }
                ActionReport::Done { rule, destinations } => {
                    for d in destinations {
                        record(metrics, d);
                    }
                    announce(replicator, &action, rule, destinations, trigger, metrics).await;
                }
            }
            let counted = match &handled {
                ActionReport::Done { destinations, .. }
                    if destinations
                        .iter()
                        .any(|d| d.outcome == DestinationStatus::Replicated) =>
                {
                    ItemResult::Copied
                }
                ActionReport::Done { .. } => ItemResult::AlreadyPresent,
                _ => ItemResult::Skipped,
            };
            Ok((
                serde_json::to_value(&handled).unwrap_or(Value::Null),
                counted,
            ))
        }
        Err(e) => {
            if let ReplicationError::Destinations { rule, outcomes, .. } = &e {
                for d in outcomes {
                    record(metrics, d);
                }
                announce(replicator, &action, rule, outcomes, trigger, metrics).await;
            } else {
                metrics.count("ReplicationsFailed", 1);
            }
            if e.is_retryable() {
                metrics.count("FailuresTransient", 1);
            } else {
                metrics.count("FailuresPermanent", 1);
            }
            tracing::error!(repository = %action.repository, digest = %action.digest, error = %e, retryable = e.is_retryable(), outcome = "failed", "replication failed");
            Err(e.into())
        }
    }
}

/// The destinations' completion events, counted (`CompletionEventsSent`,
/// `CompletionEventsFailed`); no bus configured, nothing.
async fn announce(
    replicator: &Replicator,
    action: &ecr_bridge_aws::image_action::ImageAction,
    rule: &str,
    outcomes: &[DestinationOutcome],
    trigger: Option<&str>,
    metrics: &mut MetricSet,
) {
    let announced = replicator.announce(action, rule, outcomes, trigger).await;
    if announced.sent > 0 {
        metrics.count("CompletionEventsSent", announced.sent);
    }
    if announced.failed > 0 {
        metrics.count("CompletionEventsFailed", announced.failed);
    }
}

/// A destination's metrics: its outcome, bytes, duration, refused
/// referrers and a loop refusal.
fn record(metrics: &mut MetricSet, d: &DestinationOutcome) {
    let report = d.report.as_ref();
    record_outcome(
        metrics,
        d.outcome,
        report.map_or(0, |r| r.bytes_uploaded),
        d.duration_ms,
    );
    let refused = report.map_or(0, |r| r.referrers_failed);
    if refused > 0 {
        metrics.count("ReferrersFailed", u64::from(refused));
    }
    count_loop(metrics, d.loop_prevented);
}

fn record_outcome(
    metrics: &mut MetricSet,
    outcome: DestinationStatus,
    bytes: u64,
    duration_ms: u64,
) {
    let name = match outcome {
        DestinationStatus::Replicated => "Replicated",
        DestinationStatus::UpToDate => "UpToDate",
        DestinationStatus::Deleted | DestinationStatus::AlreadyDeleted => "Deleted",
        DestinationStatus::TagMovedOn => "DeletesSkipped",
        DestinationStatus::Failed => "ReplicationsFailed",
    };
    metrics.count(name, 1);
    metrics.add("BytesUploaded", bytes as f64, "Bytes");
    metrics.add("ReplicationDuration", duration_ms as f64, "Milliseconds");
}

/// A destination refused by the loop guard: counted on its own, so that a
/// looping config can be alarmed on apart from other failures.
fn count_loop(metrics: &mut MetricSet, loop_prevented: bool) {
    if loop_prevented {
        metrics.count("LoopsPrevented", 1);
    }
}

/// What Lambda records as `errorType`/`errorMessage` (and what the
/// on-failure destination shows): the kind first, so operators can triage.
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Replication { .. } if e.is_retryable() => "TransientReplicationFailure",
            HandlerError::Replication { .. } => "PermanentReplicationFailure",
            HandlerError::Backfill { .. } if e.is_retryable() => "TransientBackfillFailure",
            HandlerError::Backfill { .. } => "PermanentBackfillFailure",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_destination_refused_as_a_loop_when_counted_then_loops_prevented_is_emitted() {
        let mut metrics = MetricSet::new("ecr-bridge");
        count_loop(&mut metrics, false);
        assert!(metrics.is_empty(), "other failures are not loops");
        count_loop(&mut metrics, true);
        assert_eq!(metrics.to_json()["LoopsPrevented"], 1.0);
    }
}
