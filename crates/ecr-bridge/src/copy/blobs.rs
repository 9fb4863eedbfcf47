//! Blobs, copied concurrently: HEAD the target, mount or upload, the
//! content streamed from the source's GET into the target's PUT.
//!
//! Retries: every request is retried by the registry's transport, within
//! the [`crate::registry::RetryPolicy`]. The target's HEAD and POST that
//! still fail then fail the blob. The transfer itself, the source's GET
//! streamed into the target's PUT, cannot be retried there (a stream cannot
//! be replayed), so when it breaks (GET refused or cut, content not
//! matching its digest, PUT refused or lost), [`BlobCopier`] starts the
//! whole blob over from its HEAD (which finds a blob the target took after
//! all; the GET gets a fresh redirect), within a budget of its own of the
//! same policy.

use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};

use super::report::Stats;
use super::verify::{Failure, VerifyingStream};
use super::{map_target_missing, CopyError, ImageCopier};
use crate::manifest::Descriptor;
use crate::registry::{RegistryError, Repository, UploadStart};

impl ImageCopier {
    pub(super) async fn copy_blobs(
        &self,
        source: &Repository,
        target: &Repository,
        blobs: Vec<Descriptor>,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        let progress = self.options.progress.clone();
        if let Some(p) = &progress {
            p.planned(blobs.len() as u64, blobs.iter().map(|b| b.size).sum());
        }
        let copier = BlobCopier {
            source,
            target,
            mount: self.options.mount && source.client().endpoint() == target.client().endpoint(),
            progress,
        };
        futures_util::stream::iter(blobs.iter())
            .map(|blob| copier.copy(blob, stats))
            .buffer_unordered(self.options.blob_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// How one attempt at a blob failed.
enum Failed {
    /// A request the transport has retried as far as its budget goes:
    /// final for the blob.
    Request(CopyError),
    /// The transfer (the source's GET streamed into the target's PUT)
    /// broke: the blob may start over.
    Transfer(CopyError),
}

fn request(e: RegistryError) -> Failed {
    Failed::Request(e.into())
}

/// Copies single blobs: HEAD the target, mount or upload, start over from
/// the source when the transfer breaks (see the module's note on retries).
pub struct BlobCopier<'a> {
    pub(super) source: &'a Repository,
    pub(super) target: &'a Repository,
    pub(super) mount: bool,
    pub(super) progress: Option<std::sync::Arc<super::Progress>>,
}

impl BlobCopier<'_> {
    pub(super) async fn copy(&self, blob: &Descriptor, stats: &Stats) -> Result<(), CopyError> {
        let mut restarts = self.target.client().retry_state();
        loop {
            let started = Instant::now();
            let e = match self.try_copy(blob).await {
                Ok(outcome) => {
                    if let Some(p) = &self.progress {
                        let unsent = match outcome {
                            BlobOutcome::Uploaded(_) => 0,
                            BlobOutcome::Skipped | BlobOutcome::Mounted => blob.size,
                        };
                        p.blob_done(unsent);
                    }
                    let (name, bytes) = match outcome {
                        BlobOutcome::Skipped => {
                            Stats::inc(&stats.blobs_skipped);
                            ("skipped", 0)
                        }
                        BlobOutcome::Mounted => {
                            Stats::inc(&stats.blobs_mounted);
                            ("mounted", 0)
                        }
                        BlobOutcome::Uploaded(n) => {
                            Stats::inc(&stats.blobs_uploaded);
                            stats.bytes_uploaded.fetch_add(n, Ordering::Relaxed);
                            ("uploaded", n)
                        }
                    };
                    tracing::debug!(
                        repository = %self.target.name(), digest = %blob.digest, bytes,
                        duration_ms = started.elapsed().as_millis() as u64, outcome = name, "blob"
                    );
                    return Ok(());
                }
                Err(Failed::Request(e)) => return Err(e),
                Err(Failed::Transfer(e)) if !e.is_retryable() => return Err(e),
                Err(Failed::Transfer(e)) => e,
            };
            match restarts.next_delay_for(e.is_throttle(), e.retry_after()) {
                Some(delay) => {
                    tracing::warn!(
                        repository = %self.target.name(), digest = %blob.digest,
                        attempt = restarts.attempts(), delay_ms = delay.as_millis() as u64,
                        error = %e, "blob copy failed; retrying from the source"
                    );
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            }
        }
    }

    async fn try_copy(&self, blob: &Descriptor) -> Result<BlobOutcome, Failed> {
        let (src, dst) = (self.source, self.target);
        if dst
            .blob_head(&blob.digest)
            .await
            .map_err(request)?
            .is_some()
        {
            return Ok(BlobOutcome::Skipped);
        }
        let mount = self.mount.then_some((&blob.digest, src.name()));
        let session = match dst
            .upload_start(mount)
            .await
            .map_err(|e| Failed::Request(map_target_missing(e, dst)))?
        {
            UploadStart::Mounted => return Ok(BlobOutcome::Mounted),
            UploadStart::Session(url) => url,
        };
        let reader = match src.blob_get(&blob.digest).await {
            Ok(r) => r,
            Err(e) => {
                dst.upload_cancel(session).await;
                return Err(Failed::Transfer(e.into()));
            }
        };
        if let Some(n) = reader.size {
            if n != blob.size {
                dst.upload_cancel(session).await;
                // What the source sends disagrees with its manifest: a
                // transfer fault as much as a cut body is.
                return Err(Failed::Transfer(
                    RegistryError::SizeMismatch {
                        digest: blob.digest.to_string(),
                        expected: blob.size,
                        actual: n,
                    }
                    .into(),
                ));
            }
        }
        let failure = Failure::default();
        let body = reqwest::Body::wrap_stream(VerifyingStream::new(
            reader.stream,
            blob,
            failure.clone(),
            self.progress.clone(),
        ));
        match dst
            .upload_put(session.clone(), &blob.digest, blob.size, body)
            .await
        {
            Ok(()) => Ok(BlobOutcome::Uploaded(blob.size)),
            Err(e) => {
                // The PUT broke because the *source* stream did: report the source's error.
                let cause = failure.lock().ok().and_then(|mut f| f.take()).unwrap_or(e);
                dst.upload_cancel(session).await;
                Err(Failed::Transfer(
                    match cause {
                        // The credentials this blob's HEAD and POST used moments ago
                        // expired before its PUT. The transport refreshes credentials
                        // on a 401 only for requests it can resend, and a stream is
                        // not one: so the blob starts over (within the restart budget)
                        // and its next HEAD meets the 401 and fetches fresh credentials.
                        RegistryError::Unauthorized { request, message }
                        | RegistryError::TokenExpired { request, message } => {
                            RegistryError::Credentials {
                                message: format!(
                                    "{request}: refused with 401 during the upload; credentials expired ({message})"
                                ),
                                retryable: true,
                            }
                        }
                        other => other,
                    }
                    .into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
