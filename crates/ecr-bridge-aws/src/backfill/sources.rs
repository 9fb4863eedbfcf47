//! The registries a backfill reads: the function's own (a mapping without
//! `sources`), or each of the mapping's `sources` through its role.

use ecr_bridge::ids::Region;
use ecr_bridge::mapping::{MappingConfig, SourceRegistry};

use super::{Backfill, BackfillError};
use crate::repositories::{named_repositories, ListedRepository};
use crate::work_queue::SourceKey;

/// A registry backfill reads: its ECR API, its region, and which of the
/// mapping's sources it is (none: the function's own).
pub(super) struct SourceEcr {
    pub ecr: aws_sdk_ecr::Client,
    pub region: Region,
    pub key: Option<SourceKey>,
}

fn source_key(listed: &SourceRegistry) -> SourceKey {
    SourceKey {
        account: listed.account_id().clone(),
        region: listed.region_id().clone(),
    }
}

impl Backfill {
    /// The function's own source registry: its region, its source role.
    pub(super) async fn home_ecr(&self) -> Result<SourceEcr, BackfillError> {
        let region = self
            .registries
            .home_region()
            .map_err(BackfillError::HomeRegion)?;
        let ecr = self
            .registries
            .ecr_in(&region, self.source_role.assume.as_ref())
            .await;
        Ok(SourceEcr {
            ecr,
            region,
            key: None,
        })
    }

    /// One of the mapping's sources, through its role (else the source role).
    pub(super) async fn listed_ecr(&self, listed: &SourceRegistry) -> SourceEcr {
        let access = listed.access(self.source_role.assume.as_ref());
        let key = source_key(listed);
        SourceEcr {
            ecr: self
                .registries
                .ecr_in(&key.region, access.assume.as_ref())
                .await,
            region: key.region.clone(),
            key: Some(key),
        }
    }

    /// What a backfill reads (never empty): every one of the mapping's
    /// `sources`, or without them the function's own registry.
    pub(super) async fn source_ecrs(
        &self,
        config: &MappingConfig,
    ) -> Result<Vec<SourceEcr>, BackfillError> {
        if config.sources().is_empty() {
            return Ok(vec![self.home_ecr().await?]);
        }
        let mut all = Vec::with_capacity(config.sources().len());
        for listed in config.sources() {
            all.push(self.listed_ecr(listed).await);
        }
        Ok(all)
    }

    /// The named repositories, by the source (index into `sources`) that
    /// has them; the first name none has is an error.
    pub(super) async fn named_in(
        &self,
        sources: &[SourceEcr],
        names: &[String],
    ) -> Result<Vec<(usize, Vec<ListedRepository>)>, BackfillError> {
        let mut found: Vec<Vec<ListedRepository>> = vec![Vec::new(); sources.len()];
        for name in names {
            let mut anywhere = false;
            for (i, source) in sources.iter().enumerate() {
                let one = std::slice::from_ref(name);
                if let Ok(repositories) = named_repositories(&source.ecr, one)
                    .await
                    .map_err(BackfillError::Source)?
                {
                    anywhere = true;
                    found[i].extend(repositories);
                }
            }
            if !anywhere {
                return Err(BackfillError::UnknownRepository(name.clone()));
            }
        }
        Ok(found
            .into_iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }
}
