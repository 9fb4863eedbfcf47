//! Access sync's use case: each user's ECR repository policy kept equal to
//! what the users table grants, on every stream batch and in a full
//! reconcile.
//!
//! Per repository: read the desired accounts from the table (consistent),
//! read the policy, write only when they differ, then read the table again.
//! ECR has no conditional write and the stream orders records per item, not
//! per user, so a writer that read the table before us may write after us;
//! the read after our write sees what it saw and we converge again (bounded).
//! An unchanged user costs a Query per user id that escapes to its name
//! (collisions fail closed) and a GetRepositoryPolicy, and no write.

mod admit;
mod announce;
mod converge;
mod error;
mod fanout;
pub mod policies;
mod reconcile;
mod report;
pub mod runs;
mod settings;
pub mod step;
pub mod table;

pub use announce::{access_event, CHANGED, GRANTED, REVOKED};
pub use error::SyncError;
pub use fanout::{Fanout, FullReconcile, RunStarted, StepReport, DEFAULT_SEGMENTS, STALE_AFTER};
use policies::RepositoryPolicies;
pub use report::{
    BatchReport, CallStats, Outcome, ReconcileReport, RepositoryReport, StreamChange, Tally,
};
pub use settings::{MissingRepository, Settings, DEFAULT_COLLISION_CANDIDATES};
pub use table::{Attributes, UsersTable};

/// The use case: its table, the repositories' policies, its settings. The
/// stream path and the full reconcile are in `reconcile`, the per-repository
/// work in `converge` (and `admit` for refused policies), the reports in
/// `report`.
pub struct AccessSync {
    table: UsersTable,
    policies: RepositoryPolicies,
    settings: Settings,
    /// The full reconcile's queue and run table; `None`: a full reconcile
    /// runs whole in one invocation.
    fanout: Option<Fanout>,
    /// Where access events go; `None`: not announced.
    event_bus: Option<std::sync::Arc<dyn crate::event_bus::EventBus>>,
}

impl AccessSync {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        ecr: aws_sdk_ecr::Client,
        settings: Settings,
    ) -> Self {
        AccessSync {
            table: UsersTable::new(
                dynamodb,
                settings.table.clone(),
                settings.attributes.clone(),
            ),
            policies: RepositoryPolicies::new(ecr),
            settings,
            fanout: None,
            event_bus: None,
        }
    }

    /// Where access events go (`EVENT_BUS_NAME`).
    pub fn with_event_bus(mut self, bus: std::sync::Arc<dyn crate::event_bus::EventBus>) -> Self {
        self.event_bus = Some(bus);
        self
    }

    /// Full reconciles fan out through `fanout`'s queue.
    pub fn with_fanout(mut self, fanout: Fanout) -> Self {
        self.fanout = Some(fanout);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
