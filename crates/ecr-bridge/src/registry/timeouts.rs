//! How long to wait for what, and the HTTP client every registry of a
//! process shares, built with those timeouts.

use std::time::Duration;

use super::error::RegistryError;

/// How long to wait for what. Uploads get a deadline that grows with their
/// size, because a registry (ECR, S3 behind it) may take a while to answer
/// after the last byte of a large blob.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending a request to its response headers (everything but uploads).
    pub response: Duration,
    /// The longest pause while reading a response body.
    pub idle_read: Duration,
    /// Upload deadline: `upload_base + size / upload_min_bytes_per_sec`.
    pub upload_base: Duration,
    pub upload_min_bytes_per_sec: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(60),
            idle_read: Duration::from_secs(60),
            upload_base: Duration::from_secs(300),
            upload_min_bytes_per_sec: 1024 * 1024,
        }
    }
}

impl Timeouts {
    pub fn upload_deadline(&self, size: u64) -> Duration {
        self.upload_base + Duration::from_secs(size / self.upload_min_bytes_per_sec.max(1))
    }
}

/// The HTTP client all registries of a process share (one connection pool).
/// HTTP/1.1 only: each concurrent blob gets its own connection instead of
/// sharing one HTTP/2 flow-control window.
pub fn http_client(timeouts: &Timeouts) -> Result<reqwest::Client, RegistryError> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("ecr-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::InvalidEndpoint {
            endpoint: String::new(),
            reason: format!("cannot build HTTP client: {e}"),
        })
}
