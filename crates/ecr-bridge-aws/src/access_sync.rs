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
mod converge;
pub mod policies;
mod reconcile;
mod report;
pub mod table;

use std::collections::HashMap;

use aws_config::{Region, SdkConfig};
use ecr_bridge::access::naming::{repository_name, NamingError};
use ecr_bridge::access::{colliding_ids, PolicyError, PolicySpec, Selection};
use futures_util::StreamExt;
use serde::Serialize;

use crate::error::AwsError;
use converge::Target;
use policies::RepositoryPolicies;
use report::log_report;
pub use report::{
    BatchReport, CallStats, Outcome, ReconcileReport, RepositoryReport, StreamChange, Tally,
};
pub use table::{Attributes, UsersTable};

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

/// Why a repository could not be brought in line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error("repository {repository}: {source}")]
    Policy {
        repository: String,
        #[source]
        source: PolicyError,
    },
    /// Even without any account it was asked to add, ECR refuses the
    /// policy: the fault is in a statement that is not ours (or the document).
    #[error("repository {repository}: ECR refuses the policy even without the accounts it does not accept (a statement that is not ours, or the document, is refused): {source}")]
    PolicyRejected {
        repository: String,
        #[source]
        source: AwsError,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("repository {repository}: the users table kept changing; gave up after {writes} policy writes")]
    NotConverged { repository: String, writes: u32 },
}

/// Codes that say the function is misconfigured (permissions, table,
/// credentials) rather than that one user's data is bad. They hit every
/// user alike, so the records are handed back to Lambda: its retries and
/// on-failure destination keep them, where dropping them would lose access
/// changes until the next full reconcile.
const CONFIGURATION_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ResourceNotFoundException",
];

impl SyncError {
    /// Whether the same records can succeed later, so Lambda should retry them.
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Naming(_) | SyncError::Policy { .. } | SyncError::PolicyRejected { .. } => {
                false
            }
            SyncError::NotConverged { .. } => true,
            SyncError::Aws(e) => {
                e.retryable
                    || e.code
                        .as_deref()
                        .is_some_and(|c| CONFIGURATION_CODES.contains(&c))
            }
        }
    }

    /// A short name for metrics and log filters.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Naming(_) => "invalid_name",
            SyncError::Policy {
                source: PolicyError::TooLarge { .. },
                ..
            } => "policy_too_large",
            SyncError::Policy { .. } => "invalid_current_policy",
            SyncError::PolicyRejected { .. } => "policy_rejected",
            SyncError::Aws(_) => "aws",
            SyncError::NotConverged { .. } => "not_converged",
        }
    }
}

pub struct AccessSync {
    table: UsersTable,
    policies: RepositoryPolicies,
    settings: Settings,
}

/// An ECR client acting in the repositories' account and region: the
/// function's own credentials, or `role_arn` assumed with them. The SDK's
/// identity cache keeps the assumed credentials and refreshes them before
/// they expire (role chaining caps them at an hour), so the role is assumed
/// once per container, not per record.
pub async fn ecr_client(
    base: &SdkConfig,
    region: &str,
    role_arn: Option<&str>,
    external_id: Option<&str>,
    session_name: &str,
) -> aws_sdk_ecr::Client {
    let region = Region::new(region.to_string());
    let mut builder = base.to_builder().region(region.clone());
    if let Some(role) = role_arn {
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name(session_name)
            .region(region)
            .configure(base);
        if let Some(id) = external_id {
            provider = provider.external_id(id);
        }
        builder = builder.credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider.build().await),
        );
    }
    aws_sdk_ecr::Client::new(&builder.build())
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
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Brings one user's repository in line with the table.
    pub async fn reconcile_user(&self, user_id: &str) -> RepositoryReport {
        match repository_name(&self.settings.prefix, user_id) {
            Ok(repository) => {
                // Another user id that escapes to the same name and has
                // granting rows makes this a collision: look them all up.
                let limit = self.settings.collision_candidates;
                let (lookups, too_many) = match colliding_ids(user_id, limit) {
                    Some(ids) => (ids, None),
                    None => (vec![user_id.to_string()], Some(limit)),
                };
                self.converge(Target {
                    repository,
                    users: vec![user_id.to_string()],
                    lookups,
                    too_many,
                    initial: None,
                    quiet: false,
                })
                .await
            }
            Err(e) => {
                let mut report = RepositoryReport::new(vec![user_id.to_string()], None);
                report.outcome = Outcome::Failed;
                report.error = Some(e.into());
                log_report(&report, false);
                report
            }
        }
    }

    /// One reconcile per distinct user of the batch. The sequence numbers
    /// of records whose user failed transiently come back for Lambda to
    /// retry; permanent failures are logged and counted, never returned,
    /// so one bad row cannot block its shard.
    pub async fn handle_batch(&self, changes: &[StreamChange]) -> BatchReport {
        let mut order: Vec<&str> = Vec::new();
        let mut sequence_numbers: HashMap<&str, Vec<&str>> = HashMap::new();
        for c in changes {
            let entry = sequence_numbers
                .entry(c.user_id.as_str())
                .or_insert_with(|| {
                    order.push(c.user_id.as_str());
                    Vec::new()
                });
            if let Some(s) = c.sequence_number.as_deref().filter(|s| !s.is_empty()) {
                entry.push(s);
            }
        }
        let reports: Vec<RepositoryReport> = futures_util::stream::iter(order)
            .map(|user| self.reconcile_user(user))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;

        let mut batch = BatchReport::default();
        for r in &reports {
            batch.tally.add(r);
            batch.calls += r.calls;
            if r.is_retryable_failure() {
                let seqs = &sequence_numbers[r.users[0].as_str()];
                if seqs.is_empty() {
                    batch.unreportable += 1;
                    tracing::error!(user_id = %r.user_label(), outcome = "failed", "transient failure, but its records carry no sequence number for Lambda to retry");
                }
                batch
                    .failed_sequence_numbers
                    .extend(seqs.iter().map(|s| s.to_string()));
            }
        }
        // Lambda restarts from the lowest identifier; keep stream order.
        batch
            .failed_sequence_numbers
            .sort_by(|a, b| cmp_sequence(a, b));
        batch.reports = reports;
        batch
    }
}

/// Stream sequence numbers are decimal strings of varying length.
fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_sequence_numbers_of_different_lengths_when_sorted_then_numerically() {
        let mut s = vec!["900", "10000", "1000"];
        s.sort_by(|a, b| cmp_sequence(a, b));
        assert_eq!(s, ["900", "1000", "10000"]);
    }

    #[test]
    fn given_errors_when_classified_then_data_is_permanent_and_throttling_or_configuration_is_retried(
    ) {
        let aws = |code: &str, retryable| {
            SyncError::Aws(AwsError {
                operation: "x",
                code: Some(code.into()),
                message: "m".into(),
                retryable,
            })
        };
        assert!(aws("ThrottlingException", true).is_retryable());
        assert!(aws("AccessDeniedException", false).is_retryable());
        assert!(!aws("ValidationException", false).is_retryable());
        assert!(!SyncError::Naming(NamingError::EmptyUserId).is_retryable());
        assert!(!SyncError::Policy {
            repository: "r".into(),
            source: PolicyError::TooLarge {
                length: 1,
                limit: 0
            }
        }
        .is_retryable());
        assert!(SyncError::NotConverged {
            repository: "r".into(),
            writes: 3
        }
        .is_retryable());
        let rejected = SyncError::PolicyRejected {
            repository: "r".into(),
            source: AwsError {
                operation: "ecr:SetRepositoryPolicy",
                code: Some("InvalidParameterException".into()),
                message: "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'".into(),
                retryable: false,
            },
        };
        assert_eq!(rejected.kind(), "policy_rejected");
        assert!(!rejected.is_retryable());
    }
}
