//! What access sync is configured with (the access-sync function reads it
//! from its environment).

use ecr_bridge::access::{PolicySpec, Selection};
use serde::Serialize;

use super::table::Attributes;

/// The default of [`Settings::collision_candidates`]: every user id an
/// e-mail address with a few dots could collide with (most have 2).
pub const DEFAULT_COLLISION_CANDIDATES: usize = 64;

/// What to do when a user with access has no repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingRepository {
    /// Log and count it; the next full reconcile tries again.
    Skip,
    /// Create it (ECR defaults), then grant.
    Create,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    pub attributes: Attributes,
    /// Repositories are `<prefix>/<escaped user id>`.
    pub prefix: String,
    pub selection: Selection,
    pub policy: PolicySpec,
    pub missing_repository: MissingRepository,
    /// Repositories reconciled at once.
    pub concurrency: usize,
    /// Items per Scan page; `None` for DynamoDB's 1 MB pages.
    pub scan_page_size: Option<i32>,
    /// Policy writes for one repository in one pass before giving up
    /// (transiently) because the table keeps changing under us.
    pub converge_rounds: u32,
    /// User ids looked up per repository name for collisions; a name more
    /// ids could escape to grants nothing (fail closed).
    pub collision_candidates: usize,
}
