//! The listing steps of a run: page through the source registry, enqueue
//! what the next level works on, count it in the run, and before the
//! invocation's deadline hand the rest on as a continuation step.
//!
//! Counting keeps `listings_open` above zero while any step is open: a
//! step adds its children (`+n`) before it counts itself done (`-1`), and a
//! continuation replaces its step (`+1 -1`).

use std::time::Instant;

use ecr_bridge::ids::{AccountId, Region, RepositoryName};
use ecr_bridge::mapping::{ImageDecision, MappingConfig};

use super::runs::{RunCounts, RunStore};
use super::BackfillError;
use crate::deadline::PageClock;
use crate::repositories::{images_page, repositories_page, ImageListing, ListedRepository};
use crate::work_queue::{work_item, Listing, ListingStep, RunId, SourceKey, WorkQueue};

pub(super) struct Lister<'a> {
    pub config: &'a MappingConfig,
    pub ecr: &'a aws_sdk_ecr::Client,
    pub region: &'a Region,
    /// The mapping's source this lister reads, carried into every step
    /// it enqueues; none: the function's own registry.
    pub source: Option<SourceKey>,
    pub queue: &'a dyn WorkQueue,
    pub runs: &'a dyn RunStore,
    pub run: &'a RunId,
    pub clock: PageClock,
}

/// What one page enqueued: the bodies accepted and refused.
struct Sent {
    accepted: usize,
    refused: usize,
}

impl Lister<'_> {
    pub async fn step(&self, listing: &Listing) -> Result<(), BackfillError> {
        match listing {
            Listing::Repositories { next_token, .. } => self.repositories(next_token.clone()).await,
            Listing::Images {
                account,
                repository,
                next_token,
                ..
            } => self.images(account, repository, next_token.clone()).await,
        }
    }

    fn out_of_time(&self) -> bool {
        !self.clock.room_for_another()
    }

    async fn send(&self, bodies: &[String]) -> Result<Sent, BackfillError> {
        let accepted = self
            .queue
            .send(bodies)
            .await
            .map_err(BackfillError::Queue)?;
        Ok(Sent {
            accepted,
            refused: bodies.len() - accepted,
        })
    }

    async fn add(&self, counts: &RunCounts) -> Result<(), BackfillError> {
        let counted = self
            .runs
            .add(self.run, counts)
            .await
            .map_err(BackfillError::Runs)?;
        if !counted {
            tracing::warn!(run = %self.run, "the backfill run was replaced by a newer one; its counts go nowhere");
        }
        Ok(())
    }

    /// After a page, with its counts: on the last page the step finishes
    /// (`finished` adds its own end to the counts); near the deadline it
    /// hands the rest to a `continuation`; else it goes on from the token
    /// returned. `None`: the step is over.
    async fn after_page(
        &self,
        mut counts: RunCounts,
        next: Option<String>,
        finished: impl FnOnce(&mut RunCounts),
        continuation: impl FnOnce(String) -> Listing,
    ) -> Result<Option<String>, BackfillError> {
        match next {
            None => {
                finished(&mut counts);
                self.add(&counts).await?;
                Ok(None)
            }
            Some(next) if self.out_of_time() => {
                self.continue_at(continuation(next), counts).await?;
                Ok(None)
            }
            Some(next) => {
                self.add(&counts).await?;
                Ok(Some(next))
            }
        }
    }

    /// Enqueues a continuation of this step at `listing` (`+1`, against
    /// this step's `-1`: net 0).
    async fn continue_at(&self, listing: Listing, counts: RunCounts) -> Result<(), BackfillError> {
        let body = ListingStep {
            run: self.run.clone(),
            listing,
        }
        .to_body();
        let sent = self.send(std::slice::from_ref(&body)).await?;
        if sent.accepted == 0 {
            // Nothing would list the rest: fail this step so that it is
            // retried (the pages it did are enqueued again; replication is
            // idempotent), after counting what it did.
            self.add(&counts).await?;
            return Err(BackfillError::Queue(crate::error::AwsError::transient(
                "sqs:SendMessageBatch",
                "the queue refused the listing's continuation",
            )));
        }
        tracing::info!(run = %self.run, "deadline near: listing continues in a new step");
        self.add(&counts).await
    }

    /// The image step of each routed repository in `repositories`.
    fn image_steps(
        &self,
        repositories: &[ListedRepository],
        counts: &mut RunCounts,
    ) -> Vec<String> {
        let mut bodies = Vec::new();
        for r in repositories {
            if self.config.route(&r.name).is_none() {
                counts.repositories_unmatched += 1;
                continue;
            }
            let (Ok(account), Ok(repository)) = (
                r.registry_id.parse::<AccountId>(),
                r.name.parse::<RepositoryName>(),
            ) else {
                tracing::warn!(repository = %r.name, registry_id = %r.registry_id, "ECR listed a repository with an unusable name or registry id; skipped");
                counts.repositories_unmatched += 1;
                continue;
            };
            counts.repositories_matched += 1;
            bodies.push(
                ListingStep {
                    run: self.run.clone(),
                    listing: Listing::Images {
                        account,
                        repository,
                        source: self.source.clone(),
                        next_token: None,
                    },
                }
                .to_body(),
            );
        }
        bodies
    }

    /// Enqueues image steps and counts them; refused ones fail the step.
    async fn enqueue_steps(
        &self,
        bodies: &[String],
        counts: &mut RunCounts,
    ) -> Result<(), BackfillError> {
        let sent = self.send(bodies).await?;
        counts.listings_open += sent.accepted as i64;
        if sent.refused > 0 {
            self.add(counts).await?;
            return Err(BackfillError::Queue(crate::error::AwsError::transient(
                "sqs:SendMessageBatch",
                format!("the queue refused {} listing steps", sent.refused),
            )));
        }
        Ok(())
    }

    /// The repositories named in the request: one image step each. With
    /// `last`, this invocation's listing is over (`-1`).
    pub async fn named(
        &self,
        repositories: &[ListedRepository],
        last: bool,
    ) -> Result<(), BackfillError> {
        let mut counts = RunCounts::default();
        let bodies = self.image_steps(repositories, &mut counts);
        self.enqueue_steps(&bodies, &mut counts).await?;
        counts.listings_open -= i64::from(last);
        self.add(&counts).await
    }

    /// A hub's start: one repositories step per source registry, each
    /// listed in its own invocation through its own role.
    pub async fn sources(&self, sources: &[SourceKey]) -> Result<(), BackfillError> {
        let mut counts = RunCounts::default();
        let bodies: Vec<String> = sources
            .iter()
            .map(|source| {
                ListingStep {
                    run: self.run.clone(),
                    listing: Listing::Repositories {
                        source: Some(source.clone()),
                        next_token: None,
                    },
                }
                .to_body()
            })
            .collect();
        self.enqueue_steps(&bodies, &mut counts).await?;
        counts.listings_open -= 1;
        self.add(&counts).await
    }

    /// The registry's repositories from `token`, page by page.
    pub async fn repositories(&self, mut token: Option<String>) -> Result<(), BackfillError> {
        loop {
            let started = Instant::now();
            let page = repositories_page(self.ecr, token.take())
                .await
                .map_err(BackfillError::Source)?;
            let mut counts = RunCounts::default();
            let bodies = self.image_steps(&page.items, &mut counts);
            self.enqueue_steps(&bodies, &mut counts).await?;
            self.clock.page_done(started);
            let finished = |c: &mut RunCounts| c.listings_open -= 1;
            let continuation = |next| Listing::Repositories {
                source: self.source.clone(),
                next_token: Some(next),
            };
            match self
                .after_page(counts, page.next_token, finished, continuation)
                .await?
            {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One repository's images from `token`, page by page: a work item for
    /// each that replicates.
    async fn images(
        &self,
        account: &AccountId,
        repository: &RepositoryName,
        mut token: Option<String>,
    ) -> Result<(), BackfillError> {
        let name = repository.as_str();
        if self.config.route(name).is_none() {
            // The mapping changed since the step was enqueued.
            tracing::info!(run = %self.run, repository = name, "no longer routed; not listed");
            return self
                .add(&RunCounts {
                    repositories_listed: 1,
                    listings_open: -1,
                    ..RunCounts::default()
                })
                .await;
        }
        loop {
            let started = Instant::now();
            let page = images_page(self.ecr, name, ImageListing::All, token.take())
                .await
                .map_err(BackfillError::Source)?;
            let mut counts = RunCounts::default();
            let mut bodies = Vec::new();
            for image in &page.items {
                counts.images_found += 1;
                let ImageDecision::Replicate { tags, .. } =
                    self.config.decide_image(name, &image.tags)
                else {
                    counts.filtered += 1;
                    continue;
                };
                if image.archived {
                    // A pull would answer 404 until it is restored.
                    counts.archived += 1;
                    continue;
                }
                bodies.push(work_item(
                    account.as_str(),
                    self.region.as_str(),
                    name,
                    &image.digest,
                    &tags,
                    Some(self.run),
                ));
            }
            let sent = self.send(&bodies).await?;
            counts.enqueued += sent.accepted as i64;
            counts.enqueue_failed += sent.refused as i64;
            drop(bodies);
            self.clock.page_done(started);
            let finished = |c: &mut RunCounts| {
                c.repositories_listed += 1;
                c.listings_open -= 1;
            };
            let continuation = |next| Listing::Images {
                account: account.clone(),
                repository: repository.clone(),
                source: self.source.clone(),
                next_token: Some(next),
            };
            match self
                .after_page(counts, page.next_token, finished, continuation)
                .await?
            {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }
}
