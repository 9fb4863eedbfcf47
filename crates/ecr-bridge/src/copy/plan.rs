//! The plan of a copy: which manifests to push, in what order, and which
//! blobs they need, read from the source's manifest tree.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::limits::{Limit, Tally};
use super::report::Stats;
use super::{CopyError, ImageCopier, MAX_DEPTH};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, Parsed};
use crate::reference::Selector;
use crate::registry::Repository;

/// A manifest to push, with its bytes as read from the source.
#[derive(Clone)]
pub(super) struct PlannedManifest {
    pub(super) digest: Digest,
    pub(super) media_type: String,
    pub(super) bytes: Bytes,
    pub(super) depth: usize,
}

impl PlannedManifest {
    /// Keeps what the push needs; the parsed form (which for a large
    /// manifest is larger than its bytes) is dropped.
    pub(super) fn new(digest: Digest, manifest: Manifest, depth: usize) -> Self {
        PlannedManifest {
            digest,
            media_type: manifest.media_type().to_string(),
            bytes: manifest.bytes,
            depth,
        }
    }
}

#[derive(Default)]
pub(super) struct Plan {
    /// Deepest first; the top manifest last.
    pub(super) manifests: Vec<PlannedManifest>,
    pub(super) blobs: Vec<Descriptor>,
}

impl ImageCopier {
    /// Reads the manifest tree below `digest` and collects the blobs to
    /// copy, each distinct manifest and blob once (an index may list a
    /// child many times, and indexes may share children), within the caps
    /// of [`super::CopyOptions`]. Children the target already has are
    /// skipped with everything below them. Level by level, each level's
    /// children fetched concurrently and checked against the caps as they
    /// arrive, so a hostile index is refused before much of it is read.
    pub(super) fn plan<'a>(
        &'a self,
        source: &'a Repository,
        target: &'a Repository,
        digest: Digest,
        depth: usize,
        stats: &'a Stats,
    ) -> BoxFuture<'a, Result<Plan, CopyError>> {
        Box::pin(async move {
            let at = |d: &Digest| format!("{source}@{d}");
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
                                self.plan_child(source, target, &d, level_depth, stats)
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
                    let Some(manifest) = got else {
                        continue;
                    };
                    tally
                        .hold(manifest.bytes.len())
                        .map_err(|l| refused(&tally, l))?;
                    match &manifest.parsed {
                        parsed @ Parsed::Image { .. } => {
                            for blob in parsed.blobs() {
                                if tally.blob(&blob.digest).map_err(|l| refused(&tally, l))? {
                                    plan.blobs.push(blob);
                                }
                            }
                        }
                        Parsed::Index { children, .. } => {
                            let mut listed = HashSet::new();
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
                    slots[slot] = Some(PlannedManifest::new(d, manifest, level_depth));
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
    /// is skipped with everything below it), else the verified manifest.
    async fn plan_child(
        &self,
        source: &Repository,
        target: &Repository,
        digest: &Digest,
        depth: usize,
        stats: &Stats,
    ) -> Result<Option<Manifest>, CopyError> {
        let present = target
            .manifest_head(&Selector::Digest(digest.clone()))
            .await?
            .is_some();
        if present {
            Stats::inc(&stats.manifests_skipped);
            return Ok(None);
        }
        Ok(Some(self.fetch_verified(source, digest, depth).await?))
    }
}
