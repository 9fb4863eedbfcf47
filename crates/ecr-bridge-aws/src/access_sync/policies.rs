//! Repository policies in the account that owns the repositories: read,
//! write, delete, and the repositories under the prefix. "Not found" answers
//! are facts here, not failures.

use ecr_bridge::mapping::RepositorySettings;

use super::CallStats;
use crate::error::AwsError;
use crate::repositories::{self, RepositoryState};

/// What `GetRepositoryPolicy` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentPolicy {
    Text(String),
    /// The repository exists without a policy.
    None,
    NoRepository,
}

pub struct RepositoryPolicies {
    ecr: aws_sdk_ecr::Client,
}

impl RepositoryPolicies {
    pub fn new(ecr: aws_sdk_ecr::Client) -> Self {
        RepositoryPolicies { ecr }
    }

    pub async fn get(
        &self,
        repository: &str,
        calls: &mut CallStats,
    ) -> Result<CurrentPolicy, AwsError> {
        calls.get_policy += 1;
        match self
            .ecr
            .get_repository_policy()
            .repository_name(repository)
            .send()
            .await
        {
            Ok(out) => Ok(match out.policy_text() {
                Some(text) if !text.trim().is_empty() => CurrentPolicy::Text(text.to_string()),
                _ => CurrentPolicy::None,
            }),
            Err(e) => AwsError::from_sdk("ecr:GetRepositoryPolicy", e)
                .or_when(&["RepositoryPolicyNotFoundException"], CurrentPolicy::None)
                .or_else(|e| {
                    e.or_when(
                        &["RepositoryNotFoundException"],
                        CurrentPolicy::NoRepository,
                    )
                }),
        }
    }

    /// Writes the policy. `Ok(false)`: the repository is gone.
    pub async fn set(
        &self,
        repository: &str,
        text: &str,
        calls: &mut CallStats,
    ) -> Result<bool, AwsError> {
        calls.set_policy += 1;
        match self
            .ecr
            .set_repository_policy()
            .repository_name(repository)
            .policy_text(text)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => AwsError::from_sdk("ecr:SetRepositoryPolicy", e)
                .or_when(&["RepositoryNotFoundException"], false),
        }
    }

    /// Deletes the policy; already gone (or no repository) is done.
    pub async fn delete(&self, repository: &str, calls: &mut CallStats) -> Result<(), AwsError> {
        calls.delete_policy += 1;
        match self
            .ecr
            .delete_repository_policy()
            .repository_name(repository)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => AwsError::from_sdk("ecr:DeleteRepositoryPolicy", e).or_when(
                &[
                    "RepositoryPolicyNotFoundException",
                    "RepositoryNotFoundException",
                ],
                (),
            ),
        }
    }

    /// Creates the repository with ECR's defaults (mutable tags, AES256).
    pub async fn create(
        &self,
        repository: &str,
        calls: &mut CallStats,
    ) -> Result<RepositoryState, AwsError> {
        calls.create_repository += 1;
        repositories::create_repository(&self.ecr, repository, &RepositorySettings::default()).await
    }

    /// One DescribeRepositories page from `token`: the repositories on it
    /// under `prefix/`, and the next page's token.
    pub async fn page_under(
        &self,
        prefix: &str,
        token: Option<String>,
        calls: &mut CallStats,
    ) -> Result<(Vec<String>, Option<String>), AwsError> {
        calls.describe_repositories += 1;
        let page = repositories::repositories_page(&self.ecr, token).await?;
        let names = page
            .items
            .into_iter()
            .map(|r| r.name)
            .filter(|n| ecr_bridge::access::naming::escaped_part(prefix, n).is_some())
            .collect();
        Ok((names, page.next_token))
    }

    /// Every repository directly under `prefix/`, over all pages
    /// (`DescribeRepositories` cannot filter by prefix).
    pub async fn list_under(
        &self,
        prefix: &str,
        calls: &mut CallStats,
    ) -> Result<Vec<String>, AwsError> {
        let (listed, pages) = repositories::list_repositories(&self.ecr).await?;
        calls.describe_repositories += pages;
        Ok(listed
            .into_iter()
            .map(|r| r.name)
            .filter(|n| ecr_bridge::access::naming::escaped_part(prefix, n).is_some())
            .collect())
    }
}
