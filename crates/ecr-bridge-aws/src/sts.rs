//! Acting in another account: an SDK config whose credentials come from
//! `sts:AssumeRole` with the base credentials. The SDK's identity cache keeps
//! the assumed credentials and refreshes them before they expire (role
//! chaining caps them at an hour), so a role is assumed once per container,
//! not per request.

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

/// `base` in `region`, as `role_arn` (with `external_id`) when given, else
/// with the base credentials.
pub async fn config_as(
    base: &SdkConfig,
    region: &str,
    role_arn: Option<&str>,
    external_id: Option<&str>,
    session_name: &str,
) -> SdkConfig {
    let region = Region::new(region.to_string());
    let mut builder = base.to_builder().region(region.clone());
    if let Some(role) = role_arn {
        let mut provider = AssumeRoleProvider::builder(role)
            .session_name(session_name)
            .region(region)
            .configure(base);
        if let Some(id) = external_id {
            provider = provider.external_id(id);
        }
        builder =
            builder.credentials_provider(SharedCredentialsProvider::new(provider.build().await));
    }
    builder.build()
}

/// An ECR client in the repositories' account and region ([`config_as`]).
pub async fn ecr_client(
    base: &SdkConfig,
    region: &str,
    role_arn: Option<&str>,
    external_id: Option<&str>,
    session_name: &str,
) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(&config_as(base, region, role_arn, external_id, session_name).await)
}
