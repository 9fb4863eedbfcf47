//! The completion event of one destination: what a pipeline listening on
//! the bus needs to act on it (deploy the image that has landed, page on a
//! failure) without reading logs. The schema is the README's
//! ("Completion events"); one event per destination of a push, a delete or
//! a backfill work item.

use serde_json::{json, Value};

use super::report::{DestinationOutcome, DestinationStatus};
use crate::event_bus::BusEvent;
use crate::image_action::ImageAction;

pub const REPLICATED: &str = "ECR Image Replicated";
pub const UP_TO_DATE: &str = "ECR Image Up To Date";
pub const DELETED: &str = "ECR Image Deleted";
pub const FAILED: &str = "ECR Image Replication Failed";

/// The event of destination `o` of `action` under `rule`; `trigger` is the
/// id of the event (or work item) that caused it.
pub fn completion_event(
    action: &ImageAction,
    rule: &str,
    o: &DestinationOutcome,
    trigger: Option<&str>,
) -> BusEvent {
    let detail_type = match o.outcome {
        DestinationStatus::Replicated => REPLICATED,
        DestinationStatus::UpToDate => UP_TO_DATE,
        DestinationStatus::Deleted
        | DestinationStatus::AlreadyDeleted
        | DestinationStatus::TagMovedOn => DELETED,
        DestinationStatus::Failed => FAILED,
    };
    let error = match (&o.error, o.outcome) {
        (Some(message), DestinationStatus::Failed) => json!({
            "class": if o.retryable { "transient" } else { "permanent" },
            "message": message,
            "loop_prevented": o.loop_prevented,
        }),
        _ => Value::Null,
    };
    let report = o.report.as_ref();
    BusEvent {
        detail_type,
        detail: json!({
            "outcome": o.outcome,
            "action": action.kind,
            "rule": rule,
            "source": {
                "account": action.account.to_string(),
                "region": action.region.to_string(),
                "repository": action.repository.to_string(),
            },
            "target": {
                "account": o.account.to_string(),
                "region": o.region.to_string(),
                "repository": o.repository,
            },
            "digest": action.digest.to_string(),
            "tags": action.tags,
            "bytes_uploaded": report.map_or(0, |r| r.bytes_uploaded),
            "created_repository": o.created_repository,
            "duration_ms": o.duration_ms,
            "error": error,
            "trigger_event_id": trigger,
        }),
    }
}
