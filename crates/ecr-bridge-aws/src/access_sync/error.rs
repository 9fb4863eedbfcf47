//! Why a repository could not be brought in line, and whether Lambda
//! should retry the records that led to it.

use ecr_bridge::access::naming::NamingError;
use ecr_bridge::access::PolicyError;

use crate::error::AwsError;

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
    /// The reconcile queue refused a step (the run's work is not lost: the
    /// step that tried is retried).
    #[error("reconcile queue: {0}")]
    Queue(AwsError),
    #[error("reconcile run table: {0}")]
    Runs(AwsError),
    /// A reconcile step arrived, but no reconcile queue and run table are
    /// configured: the deployment is half set up.
    #[error("a reconcile step arrived, but RECONCILE_QUEUE_URL and RECONCILE_TABLE are not set")]
    FanoutOff,
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
            SyncError::FanoutOff => false,
            SyncError::Aws(e) | SyncError::Queue(e) | SyncError::Runs(e) => {
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
            SyncError::Queue(_) => "reconcile_queue",
            SyncError::Runs(_) => "reconcile_runs",
            SyncError::FanoutOff => "reconcile_fanout_off",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
