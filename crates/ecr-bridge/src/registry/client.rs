//! The handles callers hold: [`RegistryClient`] for a registry, and
//! [`Repository`] for one repository on it, whose methods (one module per
//! resource: manifests, tags, blobs, referrers) take digests, selectors and
//! tags rather than strings to splice into paths.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;

use super::auth::CredentialSource;
use super::endpoint::Endpoint;
use super::error::RegistryError;
use super::retry::{RetryPolicy, RetryState};
use super::status::Subject;
use super::timeouts::Timeouts;
use super::transport::{Request, Shared, Transport};

/// Client of one registry. Cheap to clone; clones share connections,
/// credentials and rate limits.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    transport: Transport,
}

impl RegistryClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: Endpoint,
        credentials: Arc<dyn CredentialSource>,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> Self {
        RegistryClient {
            transport: Transport::new(Shared {
                http,
                endpoint,
                credentials,
                retry,
                timeouts,
            }),
        }
    }

    /// The same client (same connections, credentials and limits) whose
    /// requests all end by `deadline`: a request that cannot start before
    /// it fails with [`RegistryError::DeadlineReached`] (retryable), and
    /// timeouts and waits are cut to fit.
    pub fn with_deadline(&self, deadline: Option<Instant>) -> RegistryClient {
        RegistryClient {
            transport: self.transport.with_deadline(deadline),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.transport.deadline()
    }

    /// A retry budget for an operation above single requests (a whole
    /// blob), ending at this handle's deadline.
    pub fn retry_state(&self) -> RetryState<'_> {
        self.transport.retry_state()
    }

    pub fn endpoint(&self) -> &Endpoint {
        self.transport.endpoint()
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        self.transport.retry_policy()
    }

    /// The repository `name` on this registry.
    pub fn repository(&self, name: impl Into<String>) -> Repository {
        Repository::new(self.clone(), name)
    }

    /// Checks that the registry answers and accepts our credentials.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let t = &self.transport;
        let req = Request::new(Method::GET, t.endpoint().v2(""));
        t.execute_with(&req, move |resp| async move {
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(t.error_from(resp, "GET /v2/", "", Subject::Upload).await)
            }
        })
        .await
    }
}

/// A repository on a registry, with the client that reaches it.
#[derive(Clone, Debug)]
pub struct Repository {
    client: RegistryClient,
    name: String,
}

impl Repository {
    pub fn new(client: RegistryClient, name: impl Into<String>) -> Self {
        Repository {
            client,
            name: name.into(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The repository's name on its registry.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn transport(&self) -> &Transport {
        &self.client.transport
    }

    /// `/v2/<name>/<path>` on the registry.
    pub(super) fn url(&self, path: &str) -> url::Url {
        self.transport()
            .endpoint()
            .v2(&format!("{}/{path}", self.name))
    }

    /// `METHOD host[:port]/<name>/<path>`: how resource errors name a request.
    pub(super) fn label(&self, method: &str, path: &str) -> String {
        format!(
            "{method} {}/{}/{path}",
            self.transport().endpoint().authority(),
            self.name
        )
    }
}

/// `host[:port]/name`, as reports and errors show a repository.
impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.client.endpoint().authority(), self.name)
    }
}
