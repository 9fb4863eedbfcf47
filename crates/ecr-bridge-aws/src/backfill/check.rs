//! `check`: count, in one invocation, what a backfill would do, without
//! enqueuing: which images every destination already has (one manifest
//! HEAD by digest and one per replicated tag) and which some destination
//! lacks. Page by page, so memory stays at one page whatever the registry's
//! size; at the deadline it stops and says the counts are partial.

use std::time::Instant;

use ecr_bridge::mapping::{ImageDecision, MappingConfig, Replication};
use ecr_bridge::reference::Selector;
use ecr_bridge::registry::ManifestHead;
use ecr_bridge::Digest;
use futures_util::StreamExt;

use super::{Backfill, BackfillAction, BackfillError, BackfillRequest, BackfillSummary};
use crate::repositories::{
    images_page, repositories_page, ImageListing, ListedRepository, SourceImage,
};

/// Target presence checks in flight at once (manifest HEADs).
const CHECK_CONCURRENCY: usize = 16;

impl Backfill {
    pub(super) async fn check(
        &self,
        request: &BackfillRequest,
        deadline: Option<Instant>,
    ) -> Result<BackfillSummary, BackfillError> {
        let config = self.mapping.get().await?;
        let sources = self.source_ecrs(&config).await?;
        let mut summary = BackfillSummary::new(BackfillAction::Check);
        let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
        if !request.repositories.is_empty() {
            for (i, named) in self.named_in(&sources, &request.repositories).await? {
                if !self
                    .check_each(&config, &sources[i].ecr, &named, &mut summary, deadline)
                    .await?
                {
                    break;
                }
            }
            return Ok(summary);
        }
        for source in &sources {
            let mut token = None;
            loop {
                let page = repositories_page(&source.ecr, token.take())
                    .await
                    .map_err(BackfillError::Source)?;
                if !self
                    .check_each(&config, &source.ecr, &page.items, &mut summary, deadline)
                    .await?
                {
                    return Ok(summary);
                }
                match page.next_token {
                    None => break,
                    Some(_) if out_of_time() => {
                        summary.complete = false;
                        return Ok(summary);
                    }
                    Some(next) => token = Some(next),
                }
            }
        }
        Ok(summary)
    }

    /// Counts each repository in turn; `false` when the deadline stopped it.
    async fn check_each(
        &self,
        config: &MappingConfig,
        ecr: &aws_sdk_ecr::Client,
        repositories: &[ListedRepository],
        summary: &mut BackfillSummary,
        deadline: Option<Instant>,
    ) -> Result<bool, BackfillError> {
        for r in repositories {
            if !self
                .check_repository(config, ecr, r, summary, deadline)
                .await?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts one repository; `false` when the deadline stopped it.
    async fn check_repository(
        &self,
        config: &MappingConfig,
        ecr: &aws_sdk_ecr::Client,
        repository: &ListedRepository,
        summary: &mut BackfillSummary,
        deadline: Option<Instant>,
    ) -> Result<bool, BackfillError> {
        let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
        if out_of_time() {
            summary.complete = false;
            return Ok(false);
        }
        let name = repository.name.as_str();
        let Some(replication) = config.route(name) else {
            summary.counts.repositories_unmatched += 1;
            return Ok(true);
        };
        summary.counts.repositories_matched += 1;
        let mut token = None;
        loop {
            let page = images_page(ecr, name, ImageListing::All, token.take())
                .await
                .map_err(BackfillError::Source)?;
            let mut wanted = Vec::new();
            for image in &page.items {
                summary.counts.images_found += 1;
                match config.decide_image(name, &image.tags) {
                    ImageDecision::Replicate { tags, .. } if !image.archived => {
                        wanted.push((image, tags))
                    }
                    ImageDecision::Replicate { .. } => summary.counts.archived += 1,
                    _ => summary.counts.filtered += 1,
                }
            }
            let present: Vec<bool> = futures_util::stream::iter(&wanted)
                .map(|(image, tags)| self.present_everywhere(&replication, image, tags))
                .buffered(CHECK_CONCURRENCY)
                .collect()
                .await;
            for here in present {
                if here {
                    summary.counts.already_present += 1;
                } else {
                    summary.missing += 1;
                }
            }
            match page.next_token {
                None => {
                    summary.counts.repositories_listed += 1;
                    return Ok(true);
                }
                Some(_) if out_of_time() => {
                    summary.complete = false;
                    return Ok(false);
                }
                Some(next) => token = Some(next),
            }
        }
    }

    /// Whether every destination has the image by digest and each replicated
    /// tag points at it. A manifest a registry accepted has all its blobs and
    /// children, so one HEAD per manifest is proof enough. Any doubt (an
    /// error, an invalid target name) counts as missing: the replicator will
    /// then say what is wrong.
    async fn present_everywhere(
        &self,
        replication: &Replication,
        image: &SourceImage,
        tags: &[String],
    ) -> bool {
        let Ok(digest) = image.digest.parse::<Digest>() else {
            return false;
        };
        for target in &replication.destinations {
            let Ok(repository) = &target.repository else {
                return false;
            };
            let Ok(client) = self.registries.registry(&target.access).await else {
                return false;
            };
            let target = client.repository(repository.as_str());
            let same = |head: Result<Option<ManifestHead>, _>| matches!(head, Ok(Some(h)) if h.digest.as_ref() == Some(&digest));
            if !same(
                target
                    .manifest_head(&Selector::Digest(digest.clone()))
                    .await,
            ) {
                return false;
            }
            for tag in tags {
                if !same(target.manifest_head(&Selector::Tag(tag.clone())).await) {
                    return false;
                }
            }
        }
        true
    }
}
