//! Referrers: cosign's `sha256-<hex>.sig/.att/.sbom` tags and OCI 1.1
//! referrers (the referrers API where the source has it, else its fallback
//! tag), each copied as an image of its own. One the target refuses for
//! good is counted, and the image it refers to still counts as copied.

use super::report::Stats;
use super::{CopyError, ImageCopier};
use crate::digest::Digest;
use crate::reference::Selector;
use crate::registry::Repository;

impl ImageCopier {
    pub(super) async fn copy_referrers(
        &self,
        source: &Repository,
        digest: &Digest,
        target: &Repository,
        stats: &Stats,
    ) -> Result<(), CopyError> {
        let mut tags: Vec<String> = ["sig", "att", "sbom"]
            .iter()
            .map(|s| digest.cosign_tag(s))
            .collect();
        let listed = match source.referrers(digest).await {
            Ok(listed) => listed,
            // Not allowed to list them: the tag schema below still finds some.
            Err(e) if !e.is_retryable() => None,
            Err(e) => return Err(e.into()),
        };
        let digests: Vec<Digest> = match listed {
            Some(children) => children.into_iter().map(|c| c.digest).collect(),
            None => {
                tags.push(format!("{}-{}", "sha256", digest.hex()));
                Vec::new()
            }
        };
        for tag in tags {
            let at = Selector::Tag(tag.clone());
            if source.manifest_head(&at).await?.is_some() {
                let sub = Stats::default();
                let result = self
                    .copy_one(source, &at, target, std::slice::from_ref(&tag), &sub)
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
    target: &Repository,
    stats: &Stats,
) -> Result<(), CopyError> {
    match result {
        Ok(_) => {
            Stats::inc(&stats.referrers_copied);
            Ok(())
        }
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => {
            tracing::warn!(
                target_repository = %target, referrer, error = %e,
                "target refused a referrer; the image itself is copied"
            );
            Stats::inc(&stats.referrers_failed);
            Ok(())
        }
    }
}
