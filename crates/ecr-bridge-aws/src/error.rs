//! AWS API failures, classified once: can a retry help?

use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// A failed AWS call: which operation, what AWS said, and whether the same
/// call can succeed later (throttling, 5xx, network) or never will as is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}{}", code_suffix(.code))]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub retryable: bool,
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
}

/// ECR answers a full service quota (repositories per registry, lifecycle
/// policies, ...) with this code: not a rate, so waiting does not help.
/// Other services use the same code for transient concurrency limits
/// (DynamoDB's control plane), so it is only permanent from ECR.
const ECR_QUOTA: &str = "LimitExceededException";

/// Error codes AWS uses for "slow down" across services.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "ServerException",
    "IDPCommunicationError",
];

impl AwsError {
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match credentials_problem(&err) {
            Some(CredentialsProblem::None) => {
                return AwsError::permanent(operation, NO_CREDENTIALS)
            }
            Some(CredentialsProblem::Failed(why)) => {
                return AwsError::transient(
                    operation,
                    format!("loading AWS credentials failed: {why}"),
                )
            }
            None => {}
        }
        match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().map(str::to_string);
                let mut message = se
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}"));
                let quota = operation.starts_with("ecr:") && code.as_deref() == Some(ECR_QUOTA);
                if quota {
                    message.push_str(
                        " (an ECR service quota, not a rate: retrying cannot help; raise it in Service Quotas or remove what fills it)",
                    );
                }
                let retryable = !quota
                    && (status >= 500
                        || status == 429
                        || code
                            .as_deref()
                            .is_some_and(|c| THROTTLING.contains(&c) || c == ECR_QUOTA));
                AwsError {
                    operation,
                    code,
                    message,
                    retryable,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => AwsError {
                operation,
                code: None,
                message: format!("{}", DisplayChain(&err)),
                retryable: true,
            },
            _ => AwsError {
                operation,
                code: None,
                message: format!("{}", DisplayChain(&err)),
                retryable: false,
            },
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// `Ok(value)` when the error carries one of `codes` (ECR says the thing
    /// is already in the state wanted, e.g. gone), else the error itself.
    pub fn or_when<T>(self, codes: &[&str], value: T) -> Result<T, AwsError> {
        if codes.iter().any(|c| self.has_code(c)) {
            Ok(value)
        } else {
            Err(self)
        }
    }

    pub fn permanent(operation: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            operation,
            code: None,
            message: message.into(),
            retryable: false,
        }
    }

    pub fn transient(operation: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            retryable: true,
            ..AwsError::permanent(operation, message)
        }
    }
}

const NO_CREDENTIALS: &str = "no AWS credentials found (tried the environment, the shared config profile, web identity, ECS and EC2 instance metadata); set AWS_PROFILE (after `aws sso login` or `aws configure`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

enum CredentialsProblem {
    /// No credentials at all, or a configuration the SDK cannot use:
    /// nothing a retry changes.
    None,
    /// A provider failed (IMDS refused, STS unreachable): may pass.
    Failed(String),
}

/// The SDK's credential chain failed, found in the error's chain. Its own
/// words for "none found" list every provider with their errors' debug
/// dumps, so that case gets [`NO_CREDENTIALS`] instead.
fn credentials_problem(err: &(dyn std::error::Error + 'static)) -> Option<CredentialsProblem> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_)
                | CredentialsError::InvalidConfiguration(_) => CredentialsProblem::None,
                other => CredentialsProblem::Failed(DisplayChain(other).to_string()),
            });
        }
        cause = e.source();
    }
    None
}

/// An error and its sources on one line (the SDK's top-level messages alone
/// say little: "dispatch failure").
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::operation::create_repository::CreateRepositoryError;
    use aws_sdk_ecr::types::error::LimitExceededException;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(
        status: u16,
        err: CreateRepositoryError,
    ) -> SdkError<CreateRepositoryError, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    fn generic(code: &str) -> CreateRepositoryError {
        CreateRepositoryError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("something")
                .build(),
        )
    }

    #[test]
    fn given_ecr_limit_exceeded_when_classified_then_permanent_and_says_it_is_a_quota() {
        let quota = LimitExceededException::builder()
            .message("The maximum number of repositories has been reached.")
            .meta(
                ErrorMetadata::builder()
                    .code("LimitExceededException")
                    .message("The maximum number of repositories has been reached.")
                    .build(),
            )
            .build();
        let e = AwsError::from_sdk(
            "ecr:CreateRepository",
            service_error(400, CreateRepositoryError::LimitExceededException(quota)),
        );
        assert!(!e.retryable, "{e}");
        assert!(e.has_code("LimitExceededException"));
        assert!(
            e.to_string().starts_with(
                "ecr:CreateRepository: The maximum number of repositories has been reached. (an ECR service quota"
            ),
            "{e}"
        );
    }

    #[test]
    fn given_limit_exceeded_from_another_service_when_classified_then_still_transient() {
        let e = AwsError::from_sdk(
            "dynamodb:UpdateTable",
            service_error(400, generic("LimitExceededException")),
        );
        assert!(e.retryable, "{e}");
        assert!(!e.to_string().contains("quota"), "{e}");
    }

    #[test]
    fn given_throttling_and_server_errors_when_classified_then_transient_and_client_errors_permanent(
    ) {
        let classify = |status, code| {
            AwsError::from_sdk("ecr:CreateRepository", service_error(status, generic(code)))
                .retryable
        };
        assert!(classify(400, "ThrottlingException"));
        assert!(classify(500, "ServerException"));
        assert!(classify(429, "TooManyRequestsException"));
        assert!(!classify(400, "InvalidParameterException"));
        assert!(!classify(400, "RepositoryAlreadyExistsException"));
    }
}
