//! The copy engine: one image (or index, or artifact) from a source
//! repository to a target repository, possibly on another registry, under
//! the target's own name.
//!
//! Order matters for correctness: blobs before the manifests naming them,
//! children before their index, tags last, so a tag never points at content
//! the target lacks. Every step first asks the target whether it already has
//! the thing, which makes a copy idempotent and a re-copy nearly free.
//!
//! Here the orchestration; `plan` reads the manifest tree, `blobs` copies
//! blobs, `push` pushes manifests and tags, `verify` checks content against
//! digests, `referrers` copies signatures and the like, `report` counts
//! what happened, `limits` caps what a source may ask.

use std::time::Instant;

use crate::digest::Digest;
use crate::manifest::ManifestError;
use crate::reference::Selector;
use crate::registry::{RegistryError, Repository};

mod blobs;
mod limits;
mod plan;
mod progress;
mod push;
mod referrers;
mod report;
mod verify;

pub use blobs::BlobCopier;
pub use limits::{Limit, DEFAULT_MAX_BLOBS, DEFAULT_MAX_MANIFESTS, DEFAULT_MAX_MANIFEST_BYTES};
use plan::PlannedManifest;
pub use progress::{Progress, ProgressSnapshot};
pub use report::CopyReport;
use report::Stats;

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blobs copied at once. skopeo uses 6, crane 4; each stream holds only
    /// a few socket buffers, so memory does not grow with it.
    pub blob_concurrency: usize,
    /// Child manifests fetched or pushed at once.
    pub manifest_concurrency: usize,
    /// Try a cross-repository mount when source and target share a registry.
    pub mount: bool,
    /// Also copy cosign signature/attestation tags and OCI 1.1 referrers.
    pub copy_referrers: bool,
    /// Before each tag is set, check that the source tag of the same name
    /// still points at the copied digest, and skip it when it has moved on:
    /// a copy can take minutes, and a later push of the tag may have been
    /// replicated meanwhile (the replicator's tags are the source's tags).
    pub recheck_source_tags: bool,
    /// Distinct manifests one copy may visit (see [`limits`] for why each
    /// cap exists and its default).
    pub max_manifests: usize,
    /// Distinct blobs one copy may plan to copy.
    pub max_blobs: usize,
    /// Bytes of manifests one copy may hold in memory until they are pushed.
    pub max_manifest_bytes: u64,
    /// Counted as blobs stream, for a caller that shows progress.
    pub progress: Option<std::sync::Arc<Progress>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            blob_concurrency: 6,
            manifest_concurrency: 4,
            mount: true,
            copy_referrers: false,
            recheck_source_tags: false,
            max_manifests: DEFAULT_MAX_MANIFESTS,
            max_blobs: DEFAULT_MAX_BLOBS,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            progress: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source image {reference} not found")]
    SourceNotFound { reference: String },

    #[error(
        "target repository {repository} does not exist (create it, or let the rule create it)"
    )]
    TargetRepositoryMissing { repository: String },

    #[error("{location}: {source}")]
    Manifest {
        location: String,
        #[source]
        source: ManifestError,
    },

    #[error("tag {tag:?} in {repository} is immutable and points at {existing}, not {wanted}")]
    TagConflict {
        repository: String,
        tag: String,
        existing: String,
        wanted: Digest,
    },

    #[error("{location}: index nesting deeper than {MAX_DEPTH} levels")]
    TooDeep { location: String },

    /// The source needs more than a cap of [`CopyOptions`] allows: broken
    /// or hostile, since real images stay far below each (see [`limits`]).
    #[error("{location}: more than {max} {} in one copy (limit {} = {max}); real images stay far below it, so the source is refused", .limit.counts(), .limit.option())]
    LimitExceeded {
        location: String,
        limit: Limit,
        max: u64,
    },

    #[error(transparent)]
    Registry(#[from] RegistryError),
}

const MAX_DEPTH: usize = 4;

/// How long a copy waits before checking its blobs again after a manifest
/// was refused for one of them: time for a registry's concurrent commit of
/// the same blob to land.
const BLOB_RECHECK_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl CopyError {
    /// Whether trying the whole copy again later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            CopyError::Registry(e) => e.is_retryable(),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            CopyError::Registry(e) => e.retry_after(),
            _ => None,
        }
    }

    fn is_throttle(&self) -> bool {
        matches!(self, CopyError::Registry(e) if e.is_throttle())
    }
}

/// Copies images between repositories. Cheap to share; holds only options.
#[derive(Debug, Clone, Default)]
pub struct ImageCopier {
    options: CopyOptions,
}

impl ImageCopier {
    pub fn new(options: CopyOptions) -> Self {
        ImageCopier { options }
    }

    pub fn options(&self) -> &CopyOptions {
        &self.options
    }

    /// Copies `selector` from `source` into `target` and points `tags` at it.
    pub async fn copy(
        &self,
        source: &Repository,
        selector: &Selector,
        target: &Repository,
        tags: &[String],
    ) -> Result<CopyReport, CopyError> {
        let started = Instant::now();
        let stats = Stats::default();
        let (digest, media_type) = self
            .copy_one(source, selector, target, tags, &stats)
            .await?;
        if self.options.copy_referrers {
            self.copy_referrers(source, &digest, target, &stats).await?;
        }
        Ok(stats.report(source, target, digest, media_type, tags, started))
    }

    /// The digest a tag points at in the source (HEAD; GET when the
    /// registry does not say).
    pub async fn resolve(
        &self,
        source: &Repository,
        selector: &Selector,
    ) -> Result<Digest, CopyError> {
        match selector {
            Selector::Digest(d) => Ok(d.clone()),
            Selector::Tag(tag) => {
                source
                    .tag_digest(tag)
                    .await?
                    .ok_or_else(|| CopyError::SourceNotFound {
                        reference: format!("{source}:{tag}"),
                    })
            }
        }
    }

    /// Copies one manifest tree and its tags; returns its digest and media type.
    async fn copy_one(
        &self,
        source: &Repository,
        selector: &Selector,
        target: &Repository,
        tags: &[String],
        stats: &Stats,
    ) -> Result<(Digest, String), CopyError> {
        let digest = self.resolve(source, selector).await?;
        let by_digest = Selector::Digest(digest.clone());

        // Tags that already point at this digest need nothing; if they all
        // do, the content is complete too (a registry only accepts a
        // manifest whose references it has).
        let mut pending_tags = Vec::new();
        let mut known_media_type = None;
        for tag in tags {
            match target.manifest_head(&Selector::Tag(tag.clone())).await? {
                Some(h) if h.digest.as_ref() == Some(&digest) => {
                    Stats::inc(&stats.tags_unchanged);
                    known_media_type = h.media_type.or(known_media_type);
                }
                _ => pending_tags.push(tag.clone()),
            }
        }
        let complete = (!tags.is_empty() && pending_tags.is_empty())
            || target.manifest_head(&by_digest).await?.is_some();

        let mut top: Option<PlannedManifest> = None;
        if complete {
            Stats::inc(&stats.manifests_skipped);
        } else {
            let plan = self.plan(source, target, digest.clone(), 0, stats).await?;
            let (pushed, tagged) = self
                .copy_content(source, target, plan, &mut pending_tags, stats)
                .await?;
            top = Some(pushed);
            if tagged {
                pending_tags.remove(0);
            }
        }

        let media_type = match (&top, pending_tags.is_empty()) {
            (Some(m), _) => m.media_type.clone(),
            (None, true) => String::new(),
            (None, false) => {
                let m = self.fetch_verified(source, &digest, 0).await?;
                let m = PlannedManifest::new(digest.clone(), m, 0);
                let mt = m.media_type.clone();
                top = Some(m);
                mt
            }
        };
        let media_type = if media_type.is_empty() {
            match known_media_type {
                Some(mt) => mt,
                // Complete target, no tags to look at: ask it for the type (no body).
                None => target
                    .manifest_head(&by_digest)
                    .await?
                    .and_then(|h| h.media_type)
                    .unwrap_or_default(),
            }
        } else {
            media_type
        };
        if let Some(m) = &top {
            for tag in &pending_tags {
                if !self.source_tag_current(source, tag, &digest, stats).await? {
                    continue;
                }
                self.push_tag(target, tag, m, stats).await?;
            }
        }
        Ok((digest, media_type))
    }

    /// Blobs, then manifests. A manifest refused for a blob the target
    /// lacks, right after the blobs were copied, is the target not seeing
    /// yet what was uploaded (two pushes committing one blob at once) or a
    /// blob gone since (a lifecycle rule): so, once, after a pause, every
    /// blob is checked again (HEAD; uploaded if missing) and the manifests
    /// put again. A second such refusal is final.
    async fn copy_content(
        &self,
        source: &Repository,
        target: &Repository,
        plan: plan::Plan,
        tags: &mut Vec<String>,
        stats: &Stats,
    ) -> Result<(PlannedManifest, bool), CopyError> {
        self.copy_blobs(source, target, plan.blobs.clone(), stats)
            .await?;
        let counted = stats.manifest_counts();
        let e = match self
            .push_manifests(source, target, plan.manifests.clone(), tags, stats)
            .await
        {
            Err(CopyError::Registry(e)) if e.is_blob_unknown_refusal() => e,
            done => return done,
        };
        tracing::warn!(
            repository = %target.name(), error = %e, pause_ms = BLOB_RECHECK_PAUSE.as_millis() as u64,
            "manifest refused for a blob just copied; checking the blobs and putting it once more"
        );
        tokio::time::sleep(BLOB_RECHECK_PAUSE).await;
        // The blobs were counted once; only what this pass uploads is new.
        let recheck = Stats::default();
        self.copy_blobs(source, target, plan.blobs, &recheck)
            .await?;
        stats.add_transfers(&recheck);
        // Manifests the refused pass pushed are pushed (and counted) again.
        stats.reset_manifest_counts(counted);
        self.push_manifests(source, target, plan.manifests, tags, stats)
            .await
    }

    /// Whether `tag` may be set at `digest` now: always, unless
    /// [`CopyOptions::recheck_source_tags`] asks the source first. Asked
    /// immediately before each tag PUT, so a tag never moves back to an
    /// older digest because its copy finished after a newer one's.
    async fn source_tag_current(
        &self,
        source: &Repository,
        tag: &str,
        digest: &Digest,
        stats: &Stats,
    ) -> Result<bool, CopyError> {
        if !self.options.recheck_source_tags {
            return Ok(true);
        }
        let now = match self.resolve(source, &Selector::Tag(tag.to_string())).await {
            Ok(d) => Some(d),
            Err(CopyError::SourceNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if now.as_ref() == Some(digest) {
            return Ok(true);
        }
        Stats::inc(&stats.tags_skipped_moved);
        tracing::info!(
            repository = %source.name(), tag, digest = %digest,
            current = now.map(|d| d.to_string()).unwrap_or_else(|| "none".into()),
            "source tag moved on while copying; leaving the target tag to the later push"
        );
        Ok(false)
    }
}

/// A missing source manifest (or repository) as the copy names it.
fn map_source_missing(e: RegistryError, not_found: &dyn Fn() -> CopyError) -> CopyError {
    match e {
        RegistryError::ManifestNotFound { .. } | RegistryError::RepositoryNotFound { .. } => {
            not_found()
        }
        other => other.into(),
    }
}

/// A missing target repository as the copy names it.
fn map_target_missing(e: RegistryError, target: &Repository) -> CopyError {
    match e {
        RegistryError::RepositoryNotFound { .. } => CopyError::TargetRepositoryMissing {
            repository: target.to_string(),
        },
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_copy_errors_when_classified_then_only_transient_registry_errors_retry() {
        assert!(!CopyError::SourceNotFound {
            reference: "x".into()
        }
        .is_retryable());
        assert!(!CopyError::TagConflict {
            repository: "r".into(),
            tag: "t".into(),
            existing: "a".into(),
            wanted: Digest::sha256_of(b"")
        }
        .is_retryable());
        assert!(CopyError::Registry(RegistryError::Server {
            request: "x".into(),
            status: 503,
            message: String::new(),
            retry_after: None
        })
        .is_retryable());
    }
}
