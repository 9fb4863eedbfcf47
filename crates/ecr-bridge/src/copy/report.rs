//! What a copy did: counters kept while it runs, and the report they make.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::digest::Digest;
use crate::registry::Repository;

/// What one copy did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CopyReport {
    pub source: String,
    pub target: String,
    pub digest: Digest,
    pub media_type: String,
    pub tags: Vec<String>,
    pub manifests_copied: u32,
    pub manifests_skipped: u32,
    pub blobs_uploaded: u32,
    pub blobs_mounted: u32,
    pub blobs_skipped: u32,
    pub bytes_uploaded: u64,
    pub tags_set: u32,
    pub tags_unchanged: u32,
    /// Tags left alone because the source tag moved to another digest
    /// while copying ([`super::CopyOptions::recheck_source_tags`]).
    pub tags_skipped_moved: u32,
    pub referrers_copied: u32,
    /// Referrers (signatures, attestations, SBOMs) the target refused; the
    /// image itself was copied. ECR refuses e.g. media types with
    /// parameters (`...+json;version=0.2`).
    pub referrers_failed: u32,
    pub duration_ms: u64,
}

/// Counters of a running copy, shared by its concurrent steps.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) manifests_copied: AtomicU32,
    pub(super) manifests_skipped: AtomicU32,
    pub(super) blobs_uploaded: AtomicU32,
    pub(super) blobs_mounted: AtomicU32,
    pub(super) blobs_skipped: AtomicU32,
    pub(super) bytes_uploaded: AtomicU64,
    pub(super) tags_set: AtomicU32,
    pub(super) tags_unchanged: AtomicU32,
    pub(super) tags_skipped_moved: AtomicU32,
    pub(super) referrers_copied: AtomicU32,
    pub(super) referrers_failed: AtomicU32,
}

impl Stats {
    pub(super) fn inc(c: &AtomicU32) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Manifests copied and tags set so far.
    pub(super) fn manifest_counts(&self) -> (u32, u32) {
        (
            self.manifests_copied.load(Ordering::Relaxed),
            self.tags_set.load(Ordering::Relaxed),
        )
    }

    /// Back to [`Stats::manifest_counts`] taken earlier: for manifests
    /// pushed again.
    pub(super) fn reset_manifest_counts(&self, (manifests, tags): (u32, u32)) {
        self.manifests_copied.store(manifests, Ordering::Relaxed);
        self.tags_set.store(tags, Ordering::Relaxed);
    }

    /// What another pass over the blobs uploaded or mounted.
    pub(super) fn add_transfers(&self, other: &Stats) {
        let add32 = |a: &AtomicU32, b: &AtomicU32| {
            a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        add32(&self.blobs_uploaded, &other.blobs_uploaded);
        add32(&self.blobs_mounted, &other.blobs_mounted);
        self.bytes_uploaded.fetch_add(
            other.bytes_uploaded.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    pub(super) fn report(
        self,
        source: &Repository,
        target: &Repository,
        digest: Digest,
        media_type: String,
        tags: &[String],
        started: Instant,
    ) -> CopyReport {
        CopyReport {
            source: format!("{source}@{digest}"),
            target: target.to_string(),
            digest,
            media_type,
            tags: tags.to_vec(),
            manifests_copied: self.manifests_copied.into_inner(),
            manifests_skipped: self.manifests_skipped.into_inner(),
            blobs_uploaded: self.blobs_uploaded.into_inner(),
            blobs_mounted: self.blobs_mounted.into_inner(),
            blobs_skipped: self.blobs_skipped.into_inner(),
            bytes_uploaded: self.bytes_uploaded.into_inner(),
            tags_set: self.tags_set.into_inner(),
            tags_unchanged: self.tags_unchanged.into_inner(),
            tags_skipped_moved: self.tags_skipped_moved.into_inner(),
            referrers_copied: self.referrers_copied.into_inner(),
            referrers_failed: self.referrers_failed.into_inner(),
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}
