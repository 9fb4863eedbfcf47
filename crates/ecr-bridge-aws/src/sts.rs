//! Acting in another account: an SDK config whose credentials come from
//! `sts:AssumeRole` with the base credentials. The SDK's identity cache keeps
//! the assumed credentials and refreshes them before they expire (role
//! chaining caps them at an hour), so a role is assumed once per container,
//! not per request. Both functions build their ECR clients here.

use aws_config::sts::AssumeRoleProvider;
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use ecr_bridge::ids::{AssumeRole, Region};

/// `base` in `region`, as `assume`'s role (with its ExternalId) when given,
/// else with the base credentials.
pub async fn config_as(
    base: &SdkConfig,
    region: &Region,
    assume: Option<&AssumeRole>,
    session_name: &str,
) -> SdkConfig {
    let region = aws_config::Region::new(region.to_string());
    let mut builder = base.to_builder().region(region.clone());
    if let Some(assume) = assume {
        let mut provider = AssumeRoleProvider::builder(assume.role_arn.as_str())
            .session_name(session_name)
            .region(region)
            .configure(base);
        if let Some(id) = &assume.external_id {
            provider = provider.external_id(id.as_str());
        }
        builder =
            builder.credentials_provider(SharedCredentialsProvider::new(provider.build().await));
    }
    builder.build()
}

/// An ECR client in the repositories' region, through `assume` if given
/// ([`config_as`]).
pub async fn ecr_client(
    base: &SdkConfig,
    region: &Region,
    assume: Option<&AssumeRole>,
    session_name: &str,
) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(&config_as(base, region, assume, session_name).await)
}
