//! What the replicator takes in: a push or delete of one image in the source
//! registry. Read from ECR's events and from backfill work items alike
//! (the work queue's format), so it lives apart from both.

use ecr_bridge::ids::{AccountId, Digest, Region, RegistryAccess, RepositoryName};
use serde::Serialize;

use crate::registries::SourceRole;

/// What happened in the source registry, as the replicator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAction {
    /// The source registry's account and region (the event's).
    pub account: AccountId,
    pub region: Region,
    pub repository: RepositoryName,
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

    /// The source registry, reached through `role`.
    pub fn source(&self, role: &SourceRole) -> RegistryAccess {
        role.access(self.account.clone(), self.region.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Push,
    Delete,
}
