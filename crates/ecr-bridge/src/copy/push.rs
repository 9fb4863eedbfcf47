//! Manifests and tags onto the target: children by digest, deepest first;
//! the top manifest by its first tag; the other tags after. An immutable
//! tag that already names our digest is success, another digest a conflict.

use futures_util::{StreamExt, TryStreamExt};

use super::plan::PlannedManifest;
use super::report::Stats;
use super::{map_target_missing, CopyError, ImageCopier};
use crate::digest::Digest;
use crate::reference::Selector;
use crate::registry::{RegistryError, Repository};

impl ImageCopier {
    /// Pushes children (deepest first, concurrently per level), then the top
    /// manifest: by the first of `tags` that may be set, since that one
    /// PutImage stores the manifest and sets the tag (ECR allows 10 a
    /// second), else by digest. Tags found moved on are taken out of
    /// `tags`. Returns the top manifest, and whether `tags[0]` was set.
    pub(super) async fn push_manifests(
        &self,
        source: &Repository,
        target: &Repository,
        mut manifests: Vec<PlannedManifest>,
        tags: &mut Vec<String>,
        stats: &Stats,
    ) -> Result<(PlannedManifest, bool), CopyError> {
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
                return Ok((m, true));
            }
            break;
        }
        self.push_manifest(target, &m, stats).await?;
        Ok((m, false))
    }

    /// The top manifest pushed under its tag: `true` once the tag is
    /// settled. When the registry refuses the tag as immutable, the
    /// manifest goes by digest instead, and the tag is settled without a
    /// second PUT: it names this digest already (a concurrent writer), or
    /// another one (a conflict).
    async fn push_top_by_tag(
        &self,
        target: &Repository,
        m: &PlannedManifest,
        tag: &str,
        stats: &Stats,
    ) -> Result<bool, CopyError> {
        match target.tag_put(tag, &m.media_type, m.bytes.clone()).await {
            Ok(Some(stored)) if stored != m.digest => Err(RegistryError::DigestMismatch {
                digest: m.digest.to_string(),
                actual: stored.to_string(),
            }
            .into()),
            Ok(_) => {
                Stats::inc(&stats.manifests_copied);
                Stats::inc(&stats.tags_set);
                tracing::debug!(repository = %target.name(), digest = %m.digest, tag, "manifest pushed by tag");
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
        target: &Repository,
        m: &PlannedManifest,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        target
            .manifest_put(&m.digest, &m.media_type, m.bytes.clone())
            .await
            .map_err(|e| map_target_missing(e, target))?;
        Stats::inc(&stats.manifests_copied);
        tracing::debug!(repository = %target.name(), digest = %m.digest, media_type = %m.media_type, "manifest pushed");
        Ok(())
    }

    /// Points `tag` at the manifest. An immutable tag that already points at
    /// the same digest is success; at another digest, a permanent conflict.
    pub(super) async fn push_tag(
        &self,
        target: &Repository,
        tag: &str,
        m: &PlannedManifest,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        match target.tag_put(tag, &m.media_type, m.bytes.clone()).await {
            Ok(_) => {
                Stats::inc(&stats.tags_set);
                Ok(())
            }
            Err(e) if is_immutable_refusal(&e) => {
                self.settle_refused_tag(target, tag, &m.digest, stats).await
            }
            Err(e) => Err(map_target_missing(e, target)),
        }
    }

    /// After an immutable refusal: the tag at our digest is success, at
    /// another digest a permanent conflict.
    async fn settle_refused_tag(
        &self,
        target: &Repository,
        tag: &str,
        digest: &Digest,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        let existing = target
            .manifest_head(&Selector::Tag(tag.to_string()))
            .await?;
        match existing.and_then(|h| h.digest) {
            Some(d) if &d == digest => {
                Stats::inc(&stats.tags_unchanged);
                Ok(())
            }
            other => Err(CopyError::TagConflict {
                repository: target.to_string(),
                tag: tag.to_string(),
                existing: other
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "an unknown digest".into()),
                wanted: digest.clone(),
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
