//! Content checked against its digest: a manifest as fetched, a blob as it
//! streams through to the target (its last bytes held back until they
//! match, so the target never commits corrupt content).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::{map_source_missing, CopyError, ImageCopier};
use crate::digest::{Digest, DigestHasher};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::Selector;
use crate::registry::{RegistryError, Repository};

impl ImageCopier {
    /// Fetches a manifest by digest, checks its bytes against the digest
    /// and parses it.
    pub(super) async fn fetch_verified(
        &self,
        source: &Repository,
        digest: &Digest,
        depth: usize,
    ) -> Result<Manifest, CopyError> {
        let reference = format!("{source}@{digest}");
        let fetched = source
            .manifest_get(&Selector::Digest(digest.clone()))
            .await
            .map_err(|e| {
                map_source_missing(e, &|| CopyError::SourceNotFound {
                    reference: if depth == 0 {
                        reference.clone()
                    } else {
                        format!("{reference} (child of an index)")
                    },
                })
            })?;
        let mut hasher = digest.hasher();
        hasher.update(&fetched.bytes);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                digest: digest.to_string(),
                actual: actual.to_string(),
            }
            .into());
        }
        Manifest::parse(fetched.bytes, fetched.media_type.as_deref()).map_err(|source| {
            CopyError::Manifest {
                location: reference,
                source,
            }
        })
    }
}

/// Where a [`VerifyingStream`] leaves the error that ended it: the upload
/// it feeds only sees an I/O error, and the copy reports this one.
pub(super) type Failure = Arc<Mutex<Option<RegistryError>>>;

/// Passes a blob through while hashing and counting it; fails the stream
/// (and so the upload) when the content does not match its descriptor.
pub(super) struct VerifyingStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
    hasher: Option<DigestHasher>,
    expected: Digest,
    size: u64,
    seen: u64,
    /// All `size` bytes arrived and matched the digest.
    verified: bool,
    failed: bool,
    failure: Failure,
    progress: Option<Arc<super::Progress>>,
}

impl VerifyingStream {
    pub(super) fn new(
        inner: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
        blob: &Descriptor,
        failure: Failure,
        progress: Option<Arc<super::Progress>>,
    ) -> Self {
        VerifyingStream {
            inner,
            hasher: Some(blob.digest.hasher()),
            expected: blob.digest.clone(),
            size: blob.size,
            seen: 0,
            verified: false,
            failed: false,
            failure,
            progress,
        }
    }

    fn fail(&mut self, e: RegistryError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let text = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(e);
        }
        self.failed = true;
        Poll::Ready(Some(Err(std::io::Error::other(text))))
    }

    fn size_mismatch(&mut self) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let (digest, expected, actual) = (self.expected.to_string(), self.size, self.seen);
        self.fail(RegistryError::SizeMismatch {
            digest,
            expected,
            actual,
        })
    }
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => self.fail(e),
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if let Some(p) = &self.progress {
                    p.streamed(chunk.len() as u64);
                }
                if self.seen > self.size {
                    return self.size_mismatch();
                }
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                if self.seen == self.size {
                    // Verify before releasing the last bytes: once the
                    // target has Content-Length bytes it may commit them.
                    let actual = self.hasher.take().map(DigestHasher::finish);
                    if let Some(a) = actual.filter(|a| a != &self.expected) {
                        self.hasher = Some(self.expected.hasher());
                        let digest = self.expected.to_string();
                        return self.fail(RegistryError::DigestMismatch {
                            digest,
                            actual: a.to_string(),
                        });
                    }
                    self.verified = true;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if !self.verified => self.size_mismatch(),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn verifying(
        chunks: Vec<&'static [u8]>,
        expected: Digest,
        size: u64,
    ) -> (VerifyingStream, Failure) {
        let failure = Failure::default();
        let inner = Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ));
        let blob: Descriptor = serde_json::from_value(serde_json::json!({
            "digest": expected.to_string(),
            "size": size,
        }))
        .unwrap();
        (
            VerifyingStream::new(inner, &blob, failure.clone(), None),
            failure,
        )
    }

    #[tokio::test]
    async fn given_matching_content_when_streamed_then_all_bytes_pass_and_no_failure() {
        let d = Digest::sha256_of(b"hello world");
        let (s, failure) = verifying(vec![b"hello ", b"world"], d, 11);
        let out: Vec<_> = s.collect().await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.is_ok()));
        assert!(failure.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn given_corrupted_content_when_streamed_then_stream_ends_in_digest_mismatch() {
        let d = Digest::sha256_of(b"hello world");
        let (s, failure) = verifying(vec![b"hello ", b"World"], d, 11);
        let out: Vec<_> = s.collect().await;
        assert_eq!(
            out.len(),
            2,
            "first chunk, then the error in place of the last chunk"
        );
        assert!(out[0].is_ok() && out[1].is_err());
        assert!(matches!(
            failure.lock().unwrap().take(),
            Some(RegistryError::DigestMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn given_truncated_or_oversized_content_when_streamed_then_size_mismatch() {
        let d = Digest::sha256_of(b"hello world");
        let (s, failure) = verifying(vec![b"hello "], d.clone(), 11);
        let _: Vec<_> = s.collect().await;
        assert!(matches!(
            failure.lock().unwrap().take(),
            Some(RegistryError::SizeMismatch { actual: 6, .. })
        ));
        let (s, failure) = verifying(vec![b"hello world", b"!"], d, 11);
        let _: Vec<_> = s.collect().await;
        assert!(matches!(
            failure.lock().unwrap().take(),
            Some(RegistryError::SizeMismatch { actual: 12, .. })
        ));
    }
}
