//! Access events: a repository policy that access sync wrote puts one event
//! on the bus (`EVENT_BUS_NAME`), so that, say, a workspace can be told its
//! image pulls work now. The schema is the README's ("Completion events").

use serde_json::json;

use super::{AccessSync, Outcome, RepositoryReport};
use crate::event_bus::{Announced, BusEvent};

pub const GRANTED: &str = "ECR Access Granted";
pub const CHANGED: &str = "ECR Access Changed";
pub const REVOKED: &str = "ECR Access Revoked";

/// The event of a report whose policy was written; none otherwise.
pub fn access_event(r: &RepositoryReport) -> Option<BusEvent> {
    let detail_type = match r.outcome {
        Outcome::Granted => GRANTED,
        Outcome::Changed => CHANGED,
        Outcome::Revoked => REVOKED,
        Outcome::Unchanged | Outcome::RepositoryMissing | Outcome::Failed => return None,
    };
    Some(BusEvent {
        detail_type,
        detail: json!({
            "outcome": r.outcome.as_str(),
            "users": r.users,
            "repository": r.repository,
            "accounts": r.accounts,
            "accounts_added": r.accounts_added,
            "accounts_removed": r.accounts_removed,
            "created_repository": r.created_repository,
        }),
    })
}

impl AccessSync {
    /// The report's event on the bus, if there is a bus and an event.
    pub(super) async fn announce(&self, r: &RepositoryReport) -> Announced {
        match (&self.event_bus, access_event(r)) {
            (Some(bus), Some(event)) => bus.put(std::slice::from_ref(&event)).await,
            _ => Announced::default(),
        }
    }
}
