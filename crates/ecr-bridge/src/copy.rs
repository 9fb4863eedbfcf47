//! The copy engine: one image (or index, or artifact) from a source
//! repository to a target repository, possibly on another registry, under
//! the target's own name.
//!
//! Order matters for correctness: blobs before the manifests naming them,
//! children before their index, tags last, so a tag never points at content
//! the target lacks. Every step first asks the target whether it already has
//! the thing, which makes a copy idempotent and a re-copy nearly free.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::digest::{Digest, DigestHasher};
use crate::manifest::{Descriptor, ManifestError, Parsed};
use crate::reference::Selector;
use crate::registry::{RegistryClient, RegistryError, UploadStart};

mod limits;
use limits::Tally;
pub use limits::{Limit, DEFAULT_MAX_BLOBS, DEFAULT_MAX_MANIFESTS, DEFAULT_MAX_MANIFEST_BYTES};

/// A repository on a registry, with the client that reaches it.
#[derive(Clone, Debug)]
pub struct RepositoryLocation {
    pub client: RegistryClient,
    pub repository: String,
}

impl RepositoryLocation {
    pub fn new(client: RegistryClient, repository: impl Into<String>) -> Self {
        RepositoryLocation {
            client,
            repository: repository.into(),
        }
    }

    fn display(&self) -> String {
        format!("{}/{}", self.client.endpoint().authority(), self.repository)
    }
}

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
        }
    }
}

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
    /// while copying ([`CopyOptions::recheck_source_tags`]).
    pub tags_skipped_moved: u32,
    pub referrers_copied: u32,
    /// Referrers (signatures, attestations, SBOMs) the target refused; the
    /// image itself was copied. ECR refuses e.g. media types with
    /// parameters (`...+json;version=0.2`).
    pub referrers_failed: u32,
    pub duration_ms: u64,
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

#[derive(Default)]
struct Stats {
    manifests_copied: AtomicU32,
    manifests_skipped: AtomicU32,
    blobs_uploaded: AtomicU32,
    blobs_mounted: AtomicU32,
    blobs_skipped: AtomicU32,
    bytes_uploaded: AtomicU64,
    tags_set: AtomicU32,
    tags_unchanged: AtomicU32,
    tags_skipped_moved: AtomicU32,
    referrers_copied: AtomicU32,
    referrers_failed: AtomicU32,
}

fn inc(c: &AtomicU32) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A manifest to push, with its bytes as read from the source.
struct PlannedManifest {
    digest: Digest,
    media_type: String,
    bytes: Bytes,
    depth: usize,
}

#[derive(Default)]
struct Plan {
    manifests: Vec<PlannedManifest>,
    blobs: Vec<Descriptor>,
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
        source: &RepositoryLocation,
        selector: &Selector,
        target: &RepositoryLocation,
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
        Ok(CopyReport {
            source: format!("{}@{digest}", source.display()),
            target: target.display(),
            digest,
            media_type,
            tags: tags.to_vec(),
            manifests_copied: stats.manifests_copied.into_inner(),
            manifests_skipped: stats.manifests_skipped.into_inner(),
            blobs_uploaded: stats.blobs_uploaded.into_inner(),
            blobs_mounted: stats.blobs_mounted.into_inner(),
            blobs_skipped: stats.blobs_skipped.into_inner(),
            bytes_uploaded: stats.bytes_uploaded.into_inner(),
            tags_set: stats.tags_set.into_inner(),
            tags_unchanged: stats.tags_unchanged.into_inner(),
            tags_skipped_moved: stats.tags_skipped_moved.into_inner(),
            referrers_copied: stats.referrers_copied.into_inner(),
            referrers_failed: stats.referrers_failed.into_inner(),
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The digest a tag points at in the source (HEAD; GET when the
    /// registry does not say).
    pub async fn resolve(
        &self,
        source: &RepositoryLocation,
        selector: &Selector,
    ) -> Result<Digest, CopyError> {
        let tag = match selector {
            Selector::Digest(d) => return Ok(d.clone()),
            Selector::Tag(t) => t,
        };
        let not_found = || CopyError::SourceNotFound {
            reference: format!("{}:{tag}", source.display()),
        };
        match source.client.manifest_head(&source.repository, tag).await? {
            None => Err(not_found()),
            Some(head) => match head.digest {
                Some(d) => Ok(d),
                None => {
                    let m = source
                        .client
                        .manifest_get(&source.repository, tag)
                        .await
                        .map_err(|e| map_source_missing(e, &not_found))?;
                    Ok(Digest::sha256_of(&m.bytes))
                }
            },
        }
    }

    /// Copies one manifest tree and its tags; returns its digest and media type.
    async fn copy_one(
        &self,
        source: &RepositoryLocation,
        selector: &Selector,
        target: &RepositoryLocation,
        tags: &[String],
        stats: &Stats,
    ) -> Result<(Digest, String), CopyError> {
        let digest = self.resolve(source, selector).await?;

        // Tags that already point at this digest need nothing; if they all
        // do, the content is complete too (a registry only accepts a
        // manifest whose references it has).
        let mut pending_tags = Vec::new();
        let mut known_media_type = None;
        for tag in tags {
            match target.client.manifest_head(&target.repository, tag).await? {
                Some(h) if h.digest.as_ref() == Some(&digest) => {
                    inc(&stats.tags_unchanged);
                    known_media_type = h.media_type.or(known_media_type);
                }
                _ => pending_tags.push(tag.clone()),
            }
        }
        let complete = (!tags.is_empty() && pending_tags.is_empty())
            || target
                .client
                .manifest_head(&target.repository, &digest.to_string())
                .await?
                .is_some();

        let mut top: Option<(String, Bytes)> = None;
        if complete {
            inc(&stats.manifests_skipped);
        } else {
            let plan = self.plan(source, target, digest.clone(), 0, stats).await?;
            self.copy_blobs(source, target, plan.blobs, stats).await?;
            let (pushed, tagged) = self
                .push_manifests(source, target, plan.manifests, &mut pending_tags, stats)
                .await?;
            top = Some(pushed);
            if tagged {
                pending_tags.remove(0);
            }
        }

        let media_type = match (&top, pending_tags.is_empty()) {
            (Some((mt, _)), _) => mt.clone(),
            (None, true) => String::new(),
            (None, false) => {
                let (mt, bytes) = self.fetch_verified(source, &digest, 0).await?;
                top = Some((mt.clone(), bytes));
                mt
            }
        };
        let media_type = if media_type.is_empty() {
            match known_media_type {
                Some(mt) => mt,
                // Complete target, no tags to look at: ask it for the type (no body).
                None => target
                    .client
                    .manifest_head(&target.repository, &digest.to_string())
                    .await?
                    .and_then(|h| h.media_type)
                    .unwrap_or_default(),
            }
        } else {
            media_type
        };
        if let Some((mt, bytes)) = &top {
            for tag in &pending_tags {
                if !self.source_tag_current(source, tag, &digest, stats).await? {
                    continue;
                }
                self.push_tag(target, tag, &digest, mt, bytes.clone(), stats)
                    .await?;
            }
        }
        Ok((digest, media_type))
    }

    /// Whether `tag` may be set at `digest` now: always, unless
    /// [`CopyOptions::recheck_source_tags`] asks the source first. Asked
    /// immediately before each tag PUT, so a tag never moves back to an
    /// older digest because its copy finished after a newer one's.
    async fn source_tag_current(
        &self,
        source: &RepositoryLocation,
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
        inc(&stats.tags_skipped_moved);
        tracing::info!(
            repository = %source.repository, tag, digest = %digest,
            current = now.map(|d| d.to_string()).unwrap_or_else(|| "none".into()),
            "source tag moved on while copying; leaving the target tag to the later push"
        );
        Ok(false)
    }

    /// Fetches a manifest by digest and checks its bytes against the digest.
    async fn fetch_verified(
        &self,
        source: &RepositoryLocation,
        digest: &Digest,
        depth: usize,
    ) -> Result<(String, Bytes), CopyError> {
        let reference = format!("{}@{digest}", source.display());
        let fetched = source
            .client
            .manifest_get(&source.repository, &digest.to_string())
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
        let parsed =
            Parsed::parse(&fetched.bytes, fetched.media_type.as_deref()).map_err(|source| {
                CopyError::Manifest {
                    location: reference,
                    source,
                }
            })?;
        Ok((parsed.media_type().to_string(), fetched.bytes))
    }

    /// Reads the manifest tree below `digest` and collects the blobs to
    /// copy, each distinct manifest and blob once (an index may list a
    /// child many times, and indexes may share children), within the caps
    /// of [`CopyOptions`]. Children the target already has are skipped with
    /// everything below them. Level by level, each level's children fetched
    /// concurrently and checked against the caps as they arrive, so a
    /// hostile index is refused before much of it is read.
    fn plan<'a>(
        &'a self,
        source: &'a RepositoryLocation,
        target: &'a RepositoryLocation,
        digest: Digest,
        depth: usize,
        stats: &'a Stats,
    ) -> BoxFuture<'a, Result<Plan, CopyError>> {
        Box::pin(async move {
            let at = |d: &Digest| format!("{}@{d}", source.display());
            let top = at(&digest);
            let mut tally = Tally::new(&self.options);
            let refused = |tally: &Tally, limit: Limit| CopyError::LimitExceeded {
                location: top.clone(),
                limit,
                max: tally.max(limit),
            };
            tally.manifest(&digest).map_err(|l| refused(&tally, l))?;
            // By slot (discovery order): fetched manifests; `None` for those
            // the target has. Edges: (index, child) slots, for push order.
            let mut slots: Vec<Option<PlannedManifest>> = vec![None];
            let mut edges: Vec<(usize, usize)> = Vec::new();
            let mut plan = Plan::default();
            let mut level = vec![(0usize, digest)];
            let mut level_depth = depth;
            while let Some((_, first)) = level.first() {
                if level_depth > MAX_DEPTH {
                    return Err(CopyError::TooDeep {
                        location: at(first),
                    });
                }
                let jobs: Vec<BoxFuture<'a, Result<_, CopyError>>> = level
                    .into_iter()
                    .map(|(slot, d)| -> BoxFuture<'a, Result<_, CopyError>> {
                        Box::pin(async move {
                            let got = if slot == 0 {
                                // The top one: the caller knows the target lacks it.
                                Some(self.fetch_verified(source, &d, level_depth).await?)
                            } else {
                                self.plan_child(source, target, d.clone(), level_depth, stats)
                                    .await?
                            };
                            Ok((slot, d, got))
                        })
                    })
                    .collect();
                let mut fetched = futures_util::stream::iter(jobs)
                    .buffered(self.options.manifest_concurrency.max(1));
                let mut next = Vec::new();
                while let Some(result) = fetched.next().await {
                    let (slot, d, got) = result?;
                    let Some((media_type, bytes)) = got else {
                        continue;
                    };
                    tally.hold(bytes.len()).map_err(|l| refused(&tally, l))?;
                    let parsed = Parsed::parse(&bytes, Some(&media_type)).map_err(|e| {
                        CopyError::Manifest {
                            location: at(&d),
                            source: e,
                        }
                    })?;
                    match &parsed {
                        Parsed::Image { .. } => {
                            for blob in parsed.blobs() {
                                if tally.blob(&blob.digest).map_err(|l| refused(&tally, l))? {
                                    plan.blobs.push(blob);
                                }
                            }
                        }
                        Parsed::Index { children, .. } => {
                            let mut listed = std::collections::HashSet::new();
                            for child in children {
                                let (c, new) = tally
                                    .manifest(&child.digest)
                                    .map_err(|l| refused(&tally, l))?;
                                if new {
                                    slots.push(None);
                                    next.push((c, child.digest.clone()));
                                }
                                if listed.insert(c) {
                                    edges.push((slot, c));
                                }
                            }
                            if listed.len() < children.len() {
                                tracing::debug!(
                                    location = %at(&d), listed = children.len(), distinct = listed.len(),
                                    "index lists children more than once; each is copied once"
                                );
                            }
                        }
                    }
                    slots[slot] = Some(PlannedManifest {
                        digest: d,
                        media_type,
                        bytes,
                        depth: level_depth,
                    });
                }
                level = next;
                level_depth += 1;
            }
            // A manifest is pushed before every index listing it, so it must
            // be deeper than each of them, however it was first reached.
            let mut depths: Vec<usize> = slots
                .iter()
                .map(|m| m.as_ref().map_or(0, |m| m.depth))
                .collect();
            let mut changed = true;
            while changed {
                changed = false;
                for &(index, child) in &edges {
                    if slots[child].is_some() && depths[child] <= depths[index] {
                        depths[child] = depths[index] + 1;
                        changed = true;
                        if depths[child] > MAX_DEPTH {
                            return Err(CopyError::TooDeep { location: top });
                        }
                    }
                }
            }
            plan.manifests = slots
                .into_iter()
                .zip(depths)
                .filter_map(|(m, depth)| m.map(|m| PlannedManifest { depth, ..m }))
                .collect();
            // Deepest first; the top one (the only one at `depth`) last.
            plan.manifests.sort_by_key(|m| std::cmp::Reverse(m.depth));
            tracing::debug!(
                location = %top, manifests = plan.manifests.len(), blobs = plan.blobs.len(),
                manifest_bytes = plan.manifests.iter().map(|m| m.bytes.len()).sum::<usize>(),
                "planned"
            );
            Ok(plan)
        })
    }

    /// A child of an index: `None` when the target has it already (then it
    /// is skipped with everything below it), else its type and bytes.
    fn plan_child<'a>(
        &'a self,
        source: &'a RepositoryLocation,
        target: &'a RepositoryLocation,
        digest: Digest,
        depth: usize,
        stats: &'a Stats,
    ) -> BoxFuture<'a, Result<Option<(String, Bytes)>, CopyError>> {
        Box::pin(async move {
            let present = target
                .client
                .manifest_head(&target.repository, &digest.to_string())
                .await?
                .is_some();
            if present {
                inc(&stats.manifests_skipped);
                return Ok(None);
            }
            Ok(Some(self.fetch_verified(source, &digest, depth).await?))
        })
    }

    async fn copy_blobs(
        &self,
        source: &RepositoryLocation,
        target: &RepositoryLocation,
        blobs: Vec<Descriptor>,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        let copier = BlobCopier {
            source,
            target,
            mount: self.options.mount && source.client.endpoint() == target.client.endpoint(),
        };
        futures_util::stream::iter(blobs.iter())
            .map(|blob| copier.copy(blob, stats))
            .buffer_unordered(self.options.blob_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Pushes children (deepest first, concurrently per level), then the top
    /// manifest: by the first of `tags` that may be set, since that one
    /// PutImage stores the manifest and sets the tag (ECR allows 10 a
    /// second), else by digest. Tags found moved on are taken out of
    /// `tags`. Returns the top manifest's type and bytes, and whether
    /// `tags[0]` was set.
    async fn push_manifests(
        &self,
        source: &RepositoryLocation,
        target: &RepositoryLocation,
        mut manifests: Vec<PlannedManifest>,
        tags: &mut Vec<String>,
        stats: &Stats,
    ) -> Result<((String, Bytes), bool), CopyError> {
        // The plan always ends with the top manifest.
        let m = manifests.pop().expect("a plan holds its top manifest");
        let max_depth = manifests.iter().map(|m| m.depth).max().unwrap_or(0);
        for depth in (1..=max_depth).rev() {
            futures_util::stream::iter(manifests.iter().filter(|m| m.depth == depth))
                .map(|m| self.push_manifest(target, m, stats))
                .buffer_unordered(self.options.manifest_concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
        }
        while let Some(tag) = tags.first().cloned() {
            if !self
                .source_tag_current(source, &tag, &m.digest, stats)
                .await?
            {
                tags.remove(0);
                continue;
            }
            if self.push_top_by_tag(target, &m, &tag, stats).await? {
                return Ok(((m.media_type, m.bytes), true));
            }
            break;
        }
        self.push_manifest(target, &m, stats).await?;
        Ok(((m.media_type, m.bytes), false))
    }

    /// The top manifest pushed under its tag: `true` once the tag is
    /// settled. When the registry refuses the tag as immutable, the
    /// manifest goes by digest instead, and the tag is settled without a
    /// second PUT: it names this digest already (a concurrent writer), or
    /// another one (a conflict).
    async fn push_top_by_tag(
        &self,
        target: &RepositoryLocation,
        m: &PlannedManifest,
        tag: &str,
        stats: &Stats,
    ) -> Result<bool, CopyError> {
        match target
            .client
            .manifest_put(&target.repository, tag, &m.media_type, m.bytes.clone())
            .await
        {
            Ok(Some(stored)) if stored != m.digest => Err(RegistryError::DigestMismatch {
                digest: m.digest.to_string(),
                actual: stored.to_string(),
            }
            .into()),
            Ok(_) => {
                inc(&stats.manifests_copied);
                inc(&stats.tags_set);
                tracing::debug!(repository = %target.repository, digest = %m.digest, tag, "manifest pushed by tag");
                Ok(true)
            }
            Err(e) if is_immutable_refusal(&e) => {
                self.push_manifest(target, m, stats).await?;
                self.settle_refused_tag(target, tag, &m.digest, stats)
                    .await?;
                Ok(true)
            }
            Err(e) => Err(map_target_missing(e, target)),
        }
    }

    async fn push_manifest(
        &self,
        target: &RepositoryLocation,
        m: &PlannedManifest,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        target
            .client
            .manifest_put(
                &target.repository,
                &m.digest.to_string(),
                &m.media_type,
                m.bytes.clone(),
            )
            .await
            .map_err(|e| map_target_missing(e, target))?;
        inc(&stats.manifests_copied);
        tracing::debug!(repository = %target.repository, digest = %m.digest, media_type = %m.media_type, "manifest pushed");
        Ok(())
    }

    /// Points `tag` at the manifest. An immutable tag that already points at
    /// the same digest is success; at another digest, a permanent conflict.
    async fn push_tag(
        &self,
        target: &RepositoryLocation,
        tag: &str,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        match target
            .client
            .manifest_put(&target.repository, tag, media_type, bytes)
            .await
        {
            Ok(_) => {
                inc(&stats.tags_set);
                Ok(())
            }
            Err(e) if is_immutable_refusal(&e) => {
                self.settle_refused_tag(target, tag, digest, stats).await
            }
            Err(e) => Err(map_target_missing(e, target)),
        }
    }

    /// After an immutable refusal: the tag at our digest is success, at
    /// another digest a permanent conflict.
    async fn settle_refused_tag(
        &self,
        target: &RepositoryLocation,
        tag: &str,
        digest: &Digest,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        let existing = target.client.manifest_head(&target.repository, tag).await?;
        match existing.and_then(|h| h.digest) {
            Some(d) if &d == digest => {
                inc(&stats.tags_unchanged);
                Ok(())
            }
            other => Err(CopyError::TagConflict {
                repository: target.display(),
                tag: tag.to_string(),
                existing: other
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "an unknown digest".into()),
                wanted: digest.clone(),
            }),
        }
    }

    /// cosign's `sha256-<hex>.sig/.att/.sbom` tags, and OCI 1.1 referrers
    /// (the referrers API where the source has it, else its fallback tag).
    async fn copy_referrers(
        &self,
        source: &RepositoryLocation,
        digest: &Digest,
        target: &RepositoryLocation,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        let mut tags: Vec<String> = ["sig", "att", "sbom"]
            .iter()
            .map(|s| digest.cosign_tag(s))
            .collect();
        let mut digests = Vec::new();
        let listed = match source.client.referrers(&source.repository, digest).await {
            Ok(listed) => listed,
            // Not allowed to list them: the tag schema below still finds some.
            Err(e) if !e.is_retryable() => None,
            Err(e) => return Err(e.into()),
        };
        match listed {
            Some(index) => {
                if let Ok(Parsed::Index { children, .. }) =
                    Parsed::parse(&index, Some(crate::manifest::OCI_INDEX))
                {
                    digests.extend(children.into_iter().map(|c| c.digest));
                }
            }
            None => tags.push(format!("{}-{}", "sha256", digest.hex())),
        }
        for tag in tags {
            if source
                .client
                .manifest_head(&source.repository, &tag)
                .await?
                .is_some()
            {
                let sub = Stats::default();
                let result = self
                    .copy_one(
                        source,
                        &Selector::Tag(tag.clone()),
                        target,
                        std::slice::from_ref(&tag),
                        &sub,
                    )
                    .await;
                count_referrer(result, &tag, target, stats)?;
            }
        }
        for d in digests {
            let sub = Stats::default();
            let result = self
                .copy_one(source, &Selector::Digest(d.clone()), target, &[], &sub)
                .await;
            count_referrer(result, &d.to_string(), target, stats)?;
        }
        Ok(())
    }
}

/// A referrer the target refuses for good (ECR: 405 `UNSUPPORTED` for some
/// OCI 1.1 referrers and for media types with parameters) is counted and
/// warned about, and the image stands; a transient failure fails the copy
/// so that it is retried.
fn count_referrer(
    result: Result<(Digest, String), CopyError>,
    referrer: &str,
    target: &RepositoryLocation,
    stats: &Stats,
) -> Result<(), CopyError> {
    match result {
        Ok(_) => {
            inc(&stats.referrers_copied);
            Ok(())
        }
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => {
            tracing::warn!(
                target_repository = %target.display(), referrer, error = %e,
                "target refused a referrer; the image itself is copied"
            );
            inc(&stats.referrers_failed);
            Ok(())
        }
    }
}

fn is_immutable_refusal(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Rejected { status, code, message, .. }
        if (*status == 400 || *status == 409) && looks_like_immutable_refusal(code, message))
}

/// ECR answers an immutable-tag overwrite with 400 `TAG_INVALID` ("...
/// already exists ... cannot be overwritten because the repository is
/// immutable"); other registries use 409 or similar words.
fn looks_like_immutable_refusal(code: &str, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    code == "TAG_INVALID" || m.contains("immutable") || m.contains("already exists")
}

fn map_source_missing(e: RegistryError, not_found: &dyn Fn() -> CopyError) -> CopyError {
    match e {
        RegistryError::ManifestNotFound { .. } | RegistryError::RepositoryNotFound { .. } => {
            not_found()
        }
        other => other.into(),
    }
}

fn map_target_missing(e: RegistryError, target: &RepositoryLocation) -> CopyError {
    match e {
        RegistryError::RepositoryNotFound { .. } => CopyError::TargetRepositoryMissing {
            repository: target.display(),
        },
        other => other.into(),
    }
}

enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// Copies single blobs: HEAD the target, mount or upload, retry from the
/// source on transient failure.
pub struct BlobCopier<'a> {
    source: &'a RepositoryLocation,
    target: &'a RepositoryLocation,
    mount: bool,
}

impl BlobCopier<'_> {
    async fn copy(&self, blob: &Descriptor, stats: &Stats) -> Result<(), CopyError> {
        let mut retry = self.target.client.retry_state();
        loop {
            let started = Instant::now();
            match self.try_copy(blob).await {
                Ok(outcome) => {
                    let (name, bytes) = match outcome {
                        BlobOutcome::Skipped => {
                            inc(&stats.blobs_skipped);
                            ("skipped", 0)
                        }
                        BlobOutcome::Mounted => {
                            inc(&stats.blobs_mounted);
                            ("mounted", 0)
                        }
                        BlobOutcome::Uploaded(n) => {
                            inc(&stats.blobs_uploaded);
                            stats.bytes_uploaded.fetch_add(n, Ordering::Relaxed);
                            ("uploaded", n)
                        }
                    };
                    tracing::debug!(
                        repository = %self.target.repository, digest = %blob.digest, bytes,
                        duration_ms = started.elapsed().as_millis() as u64, outcome = name, "blob"
                    );
                    return Ok(());
                }
                Err(e) if e.is_retryable() => {
                    match retry.next_delay_for(e.is_throttle(), e.retry_after()) {
                        Some(delay) => {
                            tracing::warn!(
                                repository = %self.target.repository, digest = %blob.digest,
                                attempt = retry.attempts(), delay_ms = delay.as_millis() as u64,
                                error = %e, "blob copy failed; retrying from the source"
                            );
                            tokio::time::sleep(delay).await;
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_copy(&self, blob: &Descriptor) -> Result<BlobOutcome, CopyError> {
        let (src, dst) = (self.source, self.target);
        if dst
            .client
            .blob_head(&dst.repository, &blob.digest)
            .await?
            .is_some()
        {
            return Ok(BlobOutcome::Skipped);
        }
        let mount = self
            .mount
            .then_some((&blob.digest, src.repository.as_str()));
        let session = match dst
            .client
            .upload_start(&dst.repository, mount)
            .await
            .map_err(|e| map_target_missing(e, dst))?
        {
            UploadStart::Mounted => return Ok(BlobOutcome::Mounted),
            UploadStart::Session(url) => url,
        };
        let reader = match src.client.blob_get(&src.repository, &blob.digest).await {
            Ok(r) => r,
            Err(e) => {
                dst.client.upload_cancel(session).await;
                return Err(e.into());
            }
        };
        if let Some(n) = reader.size {
            if n != blob.size {
                dst.client.upload_cancel(session).await;
                return Err(RegistryError::SizeMismatch {
                    digest: blob.digest.to_string(),
                    expected: blob.size,
                    actual: n,
                }
                .into());
            }
        }
        let failure = Arc::new(Mutex::new(None));
        let body = reqwest::Body::wrap_stream(VerifyingStream {
            inner: reader.stream,
            hasher: Some(blob.digest.hasher()),
            expected: blob.digest.clone(),
            size: blob.size,
            seen: 0,
            verified: false,
            failed: false,
            failure: failure.clone(),
        });
        match dst
            .client
            .upload_put(
                &dst.repository,
                session.clone(),
                &blob.digest,
                blob.size,
                body,
            )
            .await
        {
            Ok(()) => Ok(BlobOutcome::Uploaded(blob.size)),
            Err(e) => {
                // The PUT broke because the *source* stream did: report the source's error.
                let cause = failure.lock().ok().and_then(|mut f| f.take()).unwrap_or(e);
                dst.client.upload_cancel(session).await;
                Err(match cause {
                    // The credentials this blob's HEAD and POST used moments ago
                    // expired before its PUT. The client refreshes credentials on
                    // a 401 only for requests it can resend, and a stream is not
                    // one: so the blob starts over (within the retry budget) and
                    // its next HEAD meets the 401 and fetches fresh credentials.
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
                .into())
            }
        }
    }
}

/// Passes a blob through while hashing and counting it; fails the stream
/// (and so the upload) when the content does not match its descriptor.
struct VerifyingStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
    hasher: Option<DigestHasher>,
    expected: Digest,
    size: u64,
    seen: u64,
    /// All `size` bytes arrived and matched the digest.
    verified: bool,
    failed: bool,
    failure: Arc<Mutex<Option<RegistryError>>>,
}

impl VerifyingStream {
    fn fail(&mut self, e: RegistryError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let text = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(e);
        }
        self.failed = true;
        Poll::Ready(Some(Err(std::io::Error::other(text))))
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
                if self.seen > self.size {
                    let (digest, expected, actual) =
                        (self.expected.to_string(), self.size, self.seen);
                    return self.fail(RegistryError::SizeMismatch {
                        digest,
                        expected,
                        actual,
                    });
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
            Poll::Ready(None) => {
                if !self.verified {
                    let (digest, expected, actual) =
                        (self.expected.to_string(), self.size, self.seen);
                    return self.fail(RegistryError::SizeMismatch {
                        digest,
                        expected,
                        actual,
                    });
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(
        chunks: Vec<&'static [u8]>,
    ) -> Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>> {
        Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    fn verifying(
        chunks: Vec<&'static [u8]>,
        expected: Digest,
        size: u64,
    ) -> (VerifyingStream, Arc<Mutex<Option<RegistryError>>>) {
        let failure = Arc::new(Mutex::new(None));
        (
            VerifyingStream {
                inner: stream_of(chunks),
                hasher: Some(expected.hasher()),
                expected,
                size,
                seen: 0,
                verified: false,
                failed: false,
                failure: failure.clone(),
            },
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

    fn location(url: &str, repository: &str) -> RepositoryLocation {
        let timeouts = crate::registry::Timeouts::default();
        let client = RegistryClient::new(
            crate::registry::http_client(&timeouts).unwrap(),
            crate::registry::Endpoint::parse(url, true).unwrap(),
            Arc::new(crate::registry::StaticCredentials(Some(
                crate::registry::BasicCredentials::new("AWS", "token"),
            ))),
            crate::registry::RetryPolicy {
                max_attempts: 3,
                initial_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(5),
                max_total_wait: std::time::Duration::from_secs(1),
                ..crate::registry::RetryPolicy::default()
            },
            timeouts,
        );
        RepositoryLocation::new(client, repository)
    }

    /// A registry holding `blob` in `src`, whose upload PUTs to `dst` are
    /// refused with 401 `refusals` times.
    async fn registry_refusing_puts(
        blob: &'static [u8],
        refusals: usize,
    ) -> crate::registry::test_server::TestServer {
        let puts = std::sync::atomic::AtomicUsize::new(0);
        crate::registry::test_server::start(move |method, target| {
            let answer = |status: &str, extra: &str, body: &[u8]| {
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                [head.as_bytes(), body].concat()
            };
            match (method, target) {
                ("HEAD", t) if t.starts_with("/v2/dst/blobs/") => answer("404 Not Found", "", b""),
                ("POST", "/v2/dst/blobs/uploads/") => answer(
                    "202 Accepted",
                    "Location: /v2/dst/blobs/uploads/s1\r\n",
                    b"",
                ),
                ("GET", t) if t.starts_with("/v2/src/blobs/") => answer("200 OK", "", blob),
                ("PUT", t) if t.starts_with("/v2/dst/blobs/uploads/s1?") => {
                    if puts.fetch_add(1, Ordering::SeqCst) < refusals {
                        answer(
                            "401 Unauthorized",
                            "WWW-Authenticate: Basic realm=\"x\"\r\n",
                            b"",
                        )
                    } else {
                        answer("201 Created", "", b"")
                    }
                }
                _ => answer("404 Not Found", "", b""),
            }
        })
        .await
    }

    fn descriptor(blob: &[u8]) -> Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/octet-stream",
            "digest": Digest::sha256_of(blob).to_string(),
            "size": blob.len(),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn given_credentials_expiring_during_a_blob_upload_when_copied_then_the_blob_is_sent_again(
    ) {
        let blob: &'static [u8] = b"layer bytes";
        let server = registry_refusing_puts(blob, 1).await;
        let (src, dst) = (location(&server.url, "src"), location(&server.url, "dst"));
        let copier = BlobCopier {
            source: &src,
            target: &dst,
            mount: false,
        };
        let stats = Stats::default();

        copier.copy(&descriptor(blob), &stats).await.unwrap();

        assert_eq!(stats.blobs_uploaded.load(Ordering::Relaxed), 1);
        assert_eq!(server.count("PUT /v2/dst/blobs/uploads/s1"), 2);
    }

    #[tokio::test]
    async fn given_uploads_always_refused_with_401_when_copied_then_a_retryable_credentials_error_within_the_budget(
    ) {
        let blob: &'static [u8] = b"layer bytes";
        let server = registry_refusing_puts(blob, usize::MAX).await;
        let (src, dst) = (location(&server.url, "src"), location(&server.url, "dst"));
        let copier = BlobCopier {
            source: &src,
            target: &dst,
            mount: false,
        };

        let err = copier
            .copy(&descriptor(blob), &Stats::default())
            .await
            .unwrap_err();

        assert!(
            matches!(
                err,
                CopyError::Registry(RegistryError::Credentials {
                    retryable: true,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("401"), "{err}");
        // One PUT per attempt of the blob's budget, then it stops.
        assert_eq!(server.count("PUT /v2/dst/blobs/uploads/s1"), 3);
    }

    #[test]
    fn given_registry_refusals_when_classified_then_immutable_tag_wording_is_recognised() {
        assert!(looks_like_immutable_refusal(
            "TAG_INVALID",
            "The image tag 'v1' already exists in the 'coeus' repository and cannot be overwritten because the repository is immutable."
        ));
        assert!(looks_like_immutable_refusal("", "tag is immutable"));
        assert!(!looks_like_immutable_refusal(
            "MANIFEST_INVALID",
            "manifest invalid"
        ));
    }

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
