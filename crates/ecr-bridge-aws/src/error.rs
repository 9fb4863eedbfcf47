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
    "LimitExceededException",
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
        match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().map(str::to_string);
                let message = se
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}"));
                let retryable = status >= 500
                    || status == 429
                    || code.as_deref().is_some_and(|c| THROTTLING.contains(&c));
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

    pub fn permanent(operation: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            operation,
            code: None,
            message: message.into(),
            retryable: false,
        }
    }
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
