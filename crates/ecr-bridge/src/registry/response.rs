//! Reading answers: the few headers the API defines, and bodies that end
//! with an error when they stall or grow past a limit (a registry decides
//! how much it sends; we decide how much we hold).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::RegistryError;
use crate::digest::Digest;

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Error bodies are read this far, for their message; the rest is dropped.
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;

pub(super) fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Docker-Content-Digest`, when present and a valid digest.
pub(super) fn header_digest(resp: &reqwest::Response) -> Option<Digest> {
    header_str(resp, DOCKER_CONTENT_DIGEST).and_then(|d| d.parse().ok())
}

/// The whole body, failing past `limit` bytes or after `idle` without data.
pub(super) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
    request: &str,
    idle: Duration,
) -> Result<Bytes, RegistryError> {
    let mut stream = IdleTimeoutStream::new(resp, idle, request.to_string());
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(RegistryError::Protocol {
                request: request.to_string(),
                reason: format!("body larger than {limit} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A response body that fails when no data arrives for `idle`.
pub(super) struct IdleTimeoutStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    request: String,
    done: bool,
}

impl IdleTimeoutStream {
    pub(super) fn new(resp: reqwest::Response, idle: Duration, request: String) -> Self {
        IdleTimeoutStream {
            inner: Box::pin(resp.bytes_stream()),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            request,
            done: false,
        }
    }
}

impl Stream for IdleTimeoutStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                let request = self.request.clone();
                Poll::Ready(Some(Err(RegistryError::transport(request, e))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(RegistryError::Timeout {
                        request: self.request.clone(),
                        waited: self.idle,
                        phase: "with no data while reading the body",
                    })))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
