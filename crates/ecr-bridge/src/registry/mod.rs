//! A small client for the OCI distribution API, the one ECR serves at
//! `<account>.dkr.ecr.<region>.amazonaws.com`.
//!
//! Every request goes through one transport (`transport.rs`): credentials
//! (asked of their source for every request, sent only to URLs on its own
//! registry, refreshed once on 401 or on ECR's expired-token 403), a rate
//! limiter per host and API that learns the registry's quotas, bounded
//! retries with backoff (throttling waited out by time, not counted), a
//! deadline no wait or timeout runs past, redirect handling that drops
//! `Authorization` when the host changes (ECR sends blob GETs to S3), and a
//! trace line per request that never shows credentials or query strings
//! (presigned URLs carry signatures there). It is the one layer that
//! retries. Above it, a [`Repository`] handle has one module per resource:
//! manifests, tags, blobs, referrers. The copy logic lives above that, in
//! [`crate::copy`].

mod auth;
mod blobs;
mod client;
mod connect_errors;
mod endpoint;
mod error;
mod manifests;
mod redirect;
mod referrers;
mod response;
mod retry;
mod status;
mod tags;
mod throttle;
mod timeouts;
mod tls_errors;
mod transport;

pub use auth::{BasicCredentials, CredentialSource, StaticCredentials};
pub use blobs::{BlobReader, UploadStart};
pub use client::{RegistryClient, Repository};
pub use endpoint::{host_is_loopback, Endpoint};
pub use error::{ErrorBody, RegistryError};
pub use manifests::{FetchedManifest, ManifestHead};
pub use retry::{parse_retry_after, RetryPolicy, RetryState, MAX_SERVER_WAIT};
pub use throttle::{limiter, AdaptiveRate, ApiClass, Limiter};
pub use timeouts::{http_client, Timeouts};

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;
