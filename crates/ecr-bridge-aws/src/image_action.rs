//! What the replicator takes in: a push or delete of one image in the source
//! registry. Read from ECR's events and from backfill work items alike
//! (the work queue's format), so it lives apart from both.

use ecr_bridge::Digest;
use serde::Serialize;

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
