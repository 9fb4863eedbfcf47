//! One invocation: parse the event, replicate, report (log line per
//! destination, EMF metrics), and fail the invocation when anything failed so
//! Lambda retries it and, in the end, hands it to the on-failure destination.

use ecr_bridge_aws::emf::MetricSet;
use ecr_bridge_aws::replicator::{Handled, Outcome, ReplicationError, Replicator};
use serde_json::{json, Value};

use crate::config::Config;
use crate::event::{self, EventError, Incoming};

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
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::InvalidEvent(_) => false,
            HandlerError::Replication { source } => source.is_retryable(),
        }
    }
}

pub async fn handle(
    replicator: &Replicator,
    config: &Config,
    payload: Value,
) -> Result<Value, HandlerError> {
    let mut metrics =
        MetricSet::new(&config.metrics_namespace).dimension("Function", "image-replicator");
    let result = run(replicator, payload, &mut metrics).await;
    metrics.flush();
    result
}

async fn run(
    replicator: &Replicator,
    payload: Value,
    metrics: &mut MetricSet,
) -> Result<Value, HandlerError> {
    let action = match event::parse(&payload) {
        Ok(Incoming::Action(a)) => a,
        Ok(Incoming::Ignored(reason)) => {
            tracing::debug!(reason, outcome = "ignored", "event ignored");
            metrics.count("EventsIgnored", 1);
            return Ok(json!({"result": "ignored", "reason": reason}));
        }
        Err(e) => {
            tracing::error!(error = %e, outcome = "invalid_event", "event rejected");
            metrics.count("EventsInvalid", 1);
            return Err(e.into());
        }
    };
    match replicator.handle(&action).await {
        Ok(handled) => {
            match &handled {
                Handled::NoRule => {
                    tracing::info!(repository = %action.repository, outcome = "no_rule", "no mapping rule matches; nothing to do");
                    metrics.count("EventsUnmapped", 1);
                }
                Handled::Filtered { rule, reason } => {
                    tracing::info!(repository = %action.repository, rule, reason, outcome = "filtered", "tag filter refused the push");
                    metrics.count("EventsFiltered", 1);
                }
                Handled::DeleteNotPropagated { rule } => {
                    tracing::info!(repository = %action.repository, rule, outcome = "delete_not_propagated", "rule does not propagate deletes");
                    metrics.count("EventsIgnored", 1);
                }
                Handled::Done { destinations, .. } => {
                    for d in destinations {
                        record(
                            metrics,
                            d.outcome,
                            d.report.as_ref().map_or(0, |r| r.bytes_uploaded),
                            d.duration_ms,
                        );
                    }
                }
            }
            Ok(serde_json::to_value(&handled).unwrap_or(Value::Null))
        }
        Err(e) => {
            if let ReplicationError::Destinations { outcomes, .. } = &e {
                for d in outcomes {
                    record(
                        metrics,
                        d.outcome,
                        d.report.as_ref().map_or(0, |r| r.bytes_uploaded),
                        d.duration_ms,
                    );
                }
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

fn record(metrics: &mut MetricSet, outcome: Outcome, bytes: u64, duration_ms: u64) {
    let name = match outcome {
        Outcome::Replicated => "Replicated",
        Outcome::UpToDate => "UpToDate",
        Outcome::Deleted | Outcome::AlreadyDeleted => "Deleted",
        Outcome::Failed => "ReplicationsFailed",
    };
    metrics.count(name, 1);
    metrics.add("BytesUploaded", bytes as f64, "Bytes");
    metrics.add("ReplicationDuration", duration_ms as f64, "Milliseconds");
}

/// What Lambda records as `errorType`/`errorMessage` (and what the
/// on-failure destination shows): the kind first, so operators can triage.
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Replication { .. } if e.is_retryable() => "TransientReplicationFailure",
            HandlerError::Replication { .. } => "PermanentReplicationFailure",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}
