//! One destination of an action: the copy (creating the repository if the
//! rule allows) or the delete, each through the destination's role.

use ecr_bridge::copy::{CopyError, CopyOptions, ImageCopier};
use ecr_bridge::mapping::{Replication, Target};
use ecr_bridge::reference::Selector;
use ecr_bridge::registry::Repository;

use super::report::{DestinationOutcome, DestinationStatus};
use super::Replicator;
use crate::error::AwsError;
use crate::image_action::ImageAction;
use crate::registries::RegistryAccess;
use crate::repositories::{self, ImageId, RepositoryState};

impl Replicator {
    pub(super) async fn push_to(
        &self,
        source: &Repository,
        action: &ImageAction,
        tags: &[String],
        replication: &Replication,
        target: &Target,
        repository: &str,
    ) -> DestinationOutcome {
        let mut out = DestinationOutcome::new(target);
        let repository = repository.to_string();
        let access = &target.access;
        let ecr = self.registries.ecr(access).await;
        match self
            .ensure_repository(&ecr, access, &repository, replication)
            .await
        {
            Ok(created) => out.created_repository = created,
            Err(e) => return out.failed(e.to_string(), e.retryable),
        }
        let client = match self.registries.registry(access).await {
            Ok(c) => c,
            Err(e) => {
                return out.failed(format!("target registry {access}: {e}"), e.is_retryable())
            }
        };
        // The source's deadline, on the target's client.
        let destination = Repository::new(
            client.with_deadline(source.client().deadline()),
            repository.clone(),
        );
        let copier = ImageCopier::new(CopyOptions {
            copy_referrers: replication.copy_referrers,
            recheck_source_tags: true,
            ..self.copy_options.clone()
        });
        let selector = Selector::Digest(action.digest.clone());
        let mut result = copier.copy(source, &selector, &destination, tags).await;
        if let (Err(CopyError::TargetRepositoryMissing { .. }), true) =
            (&result, replication.registry_creates_repository)
        {
            return out.failed(
                format!(
                    "target repository {repository} does not exist in {}/{} and rule {} leaves creating it to the registry, which did not: ECR creates a repository on push only where a repository creation template applied for CREATE_ON_PUSH covers its name (aws ecr create-repository-creation-template --prefix <prefix> --applied-for CREATE_ON_PUSH ...)",
                    access.account, access.region, replication.rule
                ),
                false,
            );
        }
        if let Err(CopyError::TargetRepositoryMissing { .. }) = &result {
            // Deleted since we last looked: forget it, create it if allowed, try once more.
            self.known_repositories
                .lock()
                .await
                .remove(&(access.clone(), repository.clone()));
            match self
                .ensure_repository(&ecr, access, &repository, replication)
                .await
            {
                Ok(created) => out.created_repository |= created,
                Err(e) => return out.failed(e.to_string(), e.retryable),
            }
            result = copier.copy(source, &selector, &destination, tags).await;
        }
        match result {
            Ok(report) => {
                out.outcome = if report.manifests_copied == 0
                    && report.tags_set == 0
                    && report.referrers_copied == 0
                {
                    DestinationStatus::UpToDate
                } else {
                    DestinationStatus::Replicated
                };
                out.report = Some(report);
                out
            }
            Err(e) => {
                let retryable = e.is_retryable();
                out.failed(e.to_string(), retryable)
            }
        }
    }

    /// Makes sure the target repository exists; creates it when the rule allows.
    /// Returns whether it was created now.
    async fn ensure_repository(
        &self,
        ecr: &aws_sdk_ecr::Client,
        access: &RegistryAccess,
        repository: &str,
        replication: &Replication,
    ) -> Result<bool, AwsError> {
        if replication.registry_creates_repository {
            // ECR's creation templates (CREATE_ON_PUSH) make it on the first push.
            return Ok(false);
        }
        let key = (access.clone(), repository.to_string());
        if self.known_repositories.lock().await.contains(&key) {
            return Ok(false);
        }
        let mut created = false;
        if !repositories::repository_exists(ecr, repository).await? {
            let Some(settings) = &replication.create_repository else {
                return Err(AwsError::permanent(
                    "ecr:DescribeRepositories",
                    format!(
                        "target repository {repository} does not exist in {}/{} and rule {} does not allow creating it (set create_repository)",
                        access.account, access.region, replication.rule
                    ),
                ));
            };
            created = repositories::create_repository(ecr, repository, settings).await?
                == RepositoryState::Created;
            if created {
                tracing::info!(account = %access.account, region = %access.region, repository, "target repository created");
            }
        }
        self.known_repositories.lock().await.insert(key);
        Ok(created)
    }

    /// Removes the deleted tag (or digest) from one destination. A tag is
    /// removed only while the target's tag points at the deleted digest:
    /// at another digest it belongs to a later push and is left alone.
    pub(super) async fn delete_in(
        &self,
        source: &Repository,
        action: &ImageAction,
        id: &ImageId,
        target: &Target,
        repository: &str,
    ) -> DestinationOutcome {
        let mut out = DestinationOutcome::new(target);
        let access = &target.access;
        if let ImageId::Tag(tag) = id {
            let client = match self.registries.registry(access).await {
                Ok(c) => c.with_deadline(source.client().deadline()),
                Err(e) => {
                    return out.failed(format!("target registry {access}: {e}"), e.is_retryable())
                }
            };
            match client
                .repository(repository)
                .manifest_head(&Selector::Tag(tag.clone()))
                .await
            {
                Ok(None) => {
                    out.outcome = DestinationStatus::AlreadyDeleted;
                    return out;
                }
                Ok(Some(head)) if head.digest.as_ref() != Some(&action.digest) => {
                    tracing::info!(
                        target_repository = %repository, tag, digest = %action.digest,
                        current = head.digest.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
                        "target tag points at another digest; left alone"
                    );
                    out.outcome = DestinationStatus::TagMovedOn;
                    return out;
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    let retryable = e.is_retryable();
                    return out.failed(format!("target registry {access}: {e}"), retryable);
                }
            }
        }
        let ecr = self.registries.ecr(access).await;
        match repositories::delete_image(&ecr, repository, id).await {
            Ok(true) => out.outcome = DestinationStatus::Deleted,
            Ok(false) => out.outcome = DestinationStatus::AlreadyDeleted,
            Err(e) => return out.failed(e.to_string(), e.retryable),
        }
        out
    }
}
