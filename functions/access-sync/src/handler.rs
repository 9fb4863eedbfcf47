//! One invocation: parse, reconcile, report (a log line per user, EMF
//! metrics) and answer Lambda. A stream batch answers with the records to
//! retry (`batchItemFailures`), never with an error, so a bad row cannot
//! block its shard; a reconcile answers with its counts, or with the run it
//! started; a batch of reconcile steps with the steps to retry.

use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use ecr_bridge_aws::access_sync::{
    AccessSync, BatchReport, FullReconcile, ReconcileReport, RunStarted, StepReport, StreamChange,
    SyncError, Tally,
};
use ecr_bridge_aws::emf::MetricSet;
use serde_json::{json, Value};

use crate::config::Config;
use crate::event::{self, EventError, Invocation, QueuedStep};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("permanent: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("{}: full reconcile failed: {source}", if source.is_retryable() { "transient" } else { "permanent" })]
    Reconcile {
        #[from]
        source: SyncError,
    },
}

/// What an invocation did, for callers that want more than Lambda's answer.
#[derive(Debug)]
pub enum Handled {
    Stream {
        response: DynamoDbEventResponse,
        report: BatchReport,
        malformed: usize,
    },
    FullReconcile(ReconcileReport),
    /// A fanned-out full reconcile started or joined.
    RunStarted(RunStarted),
    Steps {
        response: SqsBatchResponse,
        reports: Vec<StepReport>,
    },
    Users(BatchReport),
}

impl Handled {
    /// What Lambda gets back.
    pub fn to_json(&self) -> Value {
        match self {
            Handled::Stream { response, .. } => {
                serde_json::to_value(response).unwrap_or(Value::Null)
            }
            Handled::FullReconcile(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Handled::RunStarted(r) => json!({"reconcile_run": r}),
            Handled::Steps { response, .. } => {
                serde_json::to_value(response).unwrap_or(Value::Null)
            }
            Handled::Users(r) => json!({
                "users": r.reports.len(),
                "granted": r.tally.granted, "changed": r.tally.changed, "revoked": r.tally.revoked,
                "unchanged": r.tally.unchanged, "missing": r.tally.missing, "failed": r.tally.failed,
                "calls": r.calls,
            }),
        }
    }
}

pub async fn handle(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
) -> Result<Value, HandlerError> {
    handle_until(sync, config, payload, None).await
}

/// One invocation whose reconcile steps hand their rest on before
/// `deadline` (see [`ecr_bridge_aws::deadline::invocation_deadline`]).
pub async fn handle_until(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
    deadline: Option<Instant>,
) -> Result<Value, HandlerError> {
    let (result, metrics) = handle_measured_until(sync, config, payload, deadline).await;
    metrics.flush();
    result.map(|h| h.to_json())
}

pub async fn handle_detailed(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
) -> Result<Handled, HandlerError> {
    let (result, metrics) = handle_measured(sync, config, payload).await;
    metrics.flush();
    result
}

/// The invocation and the EMF metrics it would emit, not yet flushed (so
/// tests can read them).
pub async fn handle_measured(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
) -> (Result<Handled, HandlerError>, MetricSet) {
    handle_measured_until(sync, config, payload, None).await
}

pub async fn handle_measured_until(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
    deadline: Option<Instant>,
) -> (Result<Handled, HandlerError>, MetricSet) {
    let mut metrics =
        MetricSet::new(&config.metrics_namespace).dimension("Function", "access-sync");
    let result = run(sync, config, payload, deadline, &mut metrics).await;
    (result, metrics)
}

async fn run(
    sync: &AccessSync,
    config: &Config,
    payload: Value,
    deadline: Option<Instant>,
    metrics: &mut MetricSet,
) -> Result<Handled, HandlerError> {
    let invocation = match event::parse(&payload, &config.settings.attributes.user_id) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, outcome = "invalid_event", "event rejected");
            metrics.count("EventsInvalid", 1);
            return Err(e.into());
        }
    };
    match invocation {
        Invocation::Stream {
            changes,
            malformed,
            ttl_deletions,
        } => {
            for m in &malformed {
                tracing::error!(
                    record = m.index,
                    sequence_number = m.sequence_number.as_deref().unwrap_or(""),
                    error = %m.error,
                    outcome = "malformed_record",
                    "stream record names no user; skipped, not retried"
                );
            }
            metrics.count("Records", (changes.len() + malformed.len()) as u64);
            metrics.count("RecordsMalformed", malformed.len() as u64);
            if ttl_deletions > 0 {
                tracing::debug!(ttl_deletions, "records deleted by TTL");
            }
            let report = sync.handle_batch(&changes).await;
            let mut response = DynamoDbEventResponse::default();
            for seq in &report.failed_sequence_numbers {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(seq.clone());
                response.batch_item_failures.push(failure);
            }
            record(
                metrics,
                &report.tally,
                report.calls.total(),
                report.calls.writes(),
            );
            metrics.count(
                "RecordsRetried",
                report.failed_sequence_numbers.len() as u64,
            );
            tracing::info!(
                records = changes.len() + malformed.len(),
                users = report.reports.len(),
                malformed = malformed.len(),
                retried = report.failed_sequence_numbers.len(),
                calls = report.calls.total(),
                writes = report.calls.writes(),
                "stream batch done"
            );
            Ok(Handled::Stream {
                response,
                report,
                malformed: malformed.len(),
            })
        }
        // Boxed: the step's future nests deep enough to overflow the
        // compiler's layout query when inlined into the runtime's.
        Invocation::Steps(steps) => Ok(Box::pin(run_steps(sync, steps, deadline, metrics)).await),
        Invocation::FullReconcile => match sync.start_full_reconcile().await {
            Ok(FullReconcile::FanOut(started)) => {
                metrics.count(
                    if started.joined {
                        "ReconcileRunsJoined"
                    } else {
                        "ReconcileRunsStarted"
                    },
                    1,
                );
                tracing::info!(
                    run = %started.run,
                    joined = started.joined,
                    segments = started.segments,
                    outcome = if started.joined { "joined" } else { "started" },
                    "full reconcile fanned out"
                );
                Ok(Handled::RunStarted(started))
            }
            Ok(FullReconcile::Single(r)) => {
                record(metrics, &r.tally, r.calls.total(), r.calls.writes());
                metrics.count("Orphans", r.orphans as u64);
                metrics.add("ReconcileDuration", r.duration_ms as f64, "Milliseconds");
                tracing::info!(
                    users = r.users,
                    rows = r.rows,
                    scan_pages = r.scan_pages,
                    repositories = r.repositories,
                    orphans = r.orphans,
                    granted = r.tally.granted,
                    changed = r.tally.changed,
                    revoked = r.tally.revoked,
                    unchanged = r.tally.unchanged,
                    missing = r.tally.missing,
                    failed = r.tally.failed,
                    calls = r.calls.total(),
                    duration_ms = r.duration_ms,
                    outcome = if r.tally.failed == 0 {
                        "reconciled"
                    } else {
                        "reconciled_with_failures"
                    },
                    "full reconcile done"
                );
                Ok(Handled::FullReconcile(r))
            }
            Err(e) => {
                metrics.count("ReconcilesFailed", 1);
                tracing::error!(error = %e, retryable = e.is_retryable(), outcome = "failed", "full reconcile failed");
                Err(e.into())
            }
        },
        Invocation::Users(users) => {
            let changes: Vec<StreamChange> = users
                .into_iter()
                .map(|user_id| StreamChange {
                    user_id,
                    sequence_number: None,
                })
                .collect();
            let report = sync.handle_batch(&changes).await;
            record(
                metrics,
                &report.tally,
                report.calls.total(),
                report.calls.writes(),
            );
            Ok(Handled::Users(report))
        }
    }
}

/// Each step until done or its deadline; a step that failed in a way a
/// retry can mend goes back to the queue (`batchItemFailures`), one that
/// cannot is logged and dropped (the next full reconcile covers its users).
async fn run_steps(
    sync: &AccessSync,
    steps: Vec<QueuedStep>,
    deadline: Option<Instant>,
    metrics: &mut MetricSet,
) -> Handled {
    let mut response = SqsBatchResponse::default();
    let mut reports = Vec::new();
    for QueuedStep { message_id, step } in steps {
        let step = match step {
            Ok(step) => step,
            Err(error) => {
                metrics.count("ReconcileStepsInvalid", 1);
                tracing::error!(message_id = %message_id, error = %error, outcome = "invalid_step", "reconcile queue message is not a reconcile step; dropped");
                continue;
            }
        };
        match Box::pin(sync.reconcile_step(&step, deadline)).await {
            Ok(r) => {
                record(metrics, &r.tally, r.calls.total(), r.calls.writes());
                metrics.count("ReconcileSteps", 1);
                tracing::info!(
                    run = %step.run,
                    step = r.step,
                    pages = r.pages,
                    rows = r.rows,
                    users = r.users,
                    repositories = r.repositories,
                    granted = r.tally.granted,
                    changed = r.tally.changed,
                    revoked = r.tally.revoked,
                    failed = r.tally.failed,
                    calls = r.calls.total(),
                    continued = r.continued,
                    sweep_started = r.sweep_started,
                    run_finished = r.run_finished,
                    superseded = r.superseded,
                    duplicate = r.duplicate,
                    "reconcile step done"
                );
                reports.push(r);
            }
            Err(e) => {
                metrics.count("ReconcileStepsFailed", 1);
                let retryable = e.is_retryable();
                tracing::error!(run = %step.run, message_id = %message_id, error = %e, retryable, outcome = "failed", "reconcile step failed");
                if retryable {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = message_id;
                    response.batch_item_failures.push(failure);
                }
            }
        }
    }
    Handled::Steps { response, reports }
}

fn record(metrics: &mut MetricSet, t: &Tally, calls: u32, writes: u32) {
    metrics.count("Granted", t.granted as u64);
    metrics.count("Changed", t.changed as u64);
    metrics.count("Revoked", t.revoked as u64);
    metrics.count("Unchanged", t.unchanged as u64);
    metrics.count("RepositoriesMissing", t.missing as u64);
    metrics.count("RepositoriesCreated", t.created as u64);
    metrics.count("FailuresTransient", t.failed_transient as u64);
    metrics.count("FailuresPermanent", (t.failed - t.failed_transient) as u64);
    metrics.count("RowsSkipped", t.rows_skipped as u64);
    metrics.count("PrincipalsRefused", t.principals_refused as u64);
    metrics.count("EscapeCollisions", t.escape_collisions as u64);
    if t.events_failed > 0 {
        metrics.count("CompletionEventsFailed", t.events_failed as u64);
    }
    metrics.count("AwsCalls", calls as u64);
    metrics.count("PolicyWrites", writes as u64);
}

/// What Lambda records as `errorType`/`errorMessage`.
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Reconcile { source } if source.is_retryable() => {
                "TransientReconcileFailure"
            }
            HandlerError::Reconcile { .. } => "PermanentReconcileFailure",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}
