//! The access-sync stage: the common [`Stage`] with moto behind an AWS
//! front (which logs every AWS call the function makes and can answer
//! chosen calls with a 5xx), and the users table with its
//! `NEW_AND_OLD_IMAGES` stream in moto's default account.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use access_sync::config::Config;
use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use ecr_bridge_aws::access_sync::AccessSync;
use rig::AwsFront;
use serde_json::Value;

use super::stream::StreamTap;
use super::{granted_by, s, REGION, ROLE, TABLE};
use crate::common::stage::{Stage, SECRET_KEY};

pub struct AccessStage {
    /// moto, and the AWS front the function's calls go through: its call
    /// log ([`AwsFront::calls_since`]), failures on demand
    /// ([`AwsFront::fail`]), ECR's policy checks
    /// ([`AccessStage::checking_policies`]).
    pub base: Stage,
    pub stream: StreamTap,
}

/// An SDK configuration for `url` (moto or a front) with the stage's
/// static credentials.
pub async fn sdk_at(url: &str) -> SdkConfig {
    crate::common::moto_sdk(url, SECRET_KEY)
        .await
        .to_builder()
        // Failing tests stay quick; a 5xx is still retried once.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build()
}

impl AccessStage {
    pub async fn new() -> AccessStage {
        Self::start(Stage::builder().aws_front().build()).await
    }

    /// The AWS front pages DescribeRepositories `cap` at a time, as ECR
    /// pages by 100-1,000, so a few dozen repositories span pages.
    pub async fn with_page_cap(cap: usize) -> AccessStage {
        Self::start(Stage::builder().aws_front().ecr_page_cap(cap).build()).await
    }

    /// The function's AWS front refuses `SetRepositoryPolicy` as ECR does
    /// ([`AwsFront::check_policies_as_ecr`]); moto itself takes any policy.
    pub async fn checking_policies(refused_accounts: &[&str]) -> AccessStage {
        let stage = Self::new().await;
        stage.aws().check_policies_as_ecr(refused_accounts);
        stage
    }

    /// Creates the users table, with its stream, in moto.
    async fn start(base: Stage) -> AccessStage {
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_at(&base.moto.url()).await);
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        // Gen3's table: (user_id, bmh_workspace_id), several rows per user.
        let created = ddb
            .create_table()
            .table_name(TABLE)
            .key_schema(key("user_id", KeyType::Hash))
            .key_schema(key("bmh_workspace_id", KeyType::Range))
            .attribute_definitions(attr("user_id"))
            .attribute_definitions(attr("bmh_workspace_id"))
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create table");
        let arn = created
            .table_description()
            .and_then(|t| t.latest_stream_arn())
            .expect("stream ARN")
            .to_string();
        let stream = StreamTap::new(base.moto.url(), arn);
        AccessStage { base, stream }
    }

    /// The AWS front the function's calls go through.
    pub fn aws(&self) -> &AwsFront {
        self.base.aws()
    }

    pub fn moto_url(&self) -> String {
        self.base.moto.url()
    }

    /// For the test's own setup and checks: straight to moto.
    pub async fn sdk(&self) -> SdkConfig {
        sdk_at(&self.moto_url()).await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk().await)
    }

    /// ECR in the repositories' account, as the function's role sees it.
    pub async fn ecr(&self) -> aws_sdk_ecr::Client {
        crate::common::ecr_as(&self.sdk().await, ROLE).await
    }

    pub fn env(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("TABLE_NAME", TABLE),
            ("ECR_REGION", REGION),
            ("ECR_ROLE_ARN", ROLE),
            ("ECR_ROLE_EXTERNAL_ID", "gen3-access-sync"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    /// The function under test, with its AWS calls going through the
    /// stage's AWS front.
    pub async fn sync(&self, extra: &[(&str, &str)]) -> (AccessSync, Config) {
        self.sync_through(self.aws(), extra).await
    }

    /// The function under test behind another front.
    pub async fn sync_through(
        &self,
        front: &AwsFront,
        extra: &[(&str, &str)],
    ) -> (AccessSync, Config) {
        let config = Config::from_env(&Self::env(extra)).expect("config");
        let sync = config.build_with(sdk_at(&front.url()).await).await;
        (sync, config)
    }

    pub async fn put(&self, item: HashMap<String, AttributeValue>) {
        self.dynamodb()
            .await
            .put_item()
            .table_name(TABLE)
            .set_item(Some(item))
            .send()
            .await
            .expect("put_item");
    }

    pub async fn delete(&self, user: &str, ws: &str) {
        self.dynamodb()
            .await
            .delete_item()
            .table_name(TABLE)
            .key("user_id", s(user))
            .key("bmh_workspace_id", s(ws))
            .send()
            .await
            .expect("delete_item");
    }

    pub async fn create_repository(&self, name: &str) {
        self.ecr()
            .await
            .create_repository()
            .repository_name(name)
            .send()
            .await
            .expect("create_repository");
    }

    pub async fn set_policy(&self, repository: &str, text: &str) {
        self.ecr()
            .await
            .set_repository_policy()
            .repository_name(repository)
            .policy_text(text)
            .send()
            .await
            .expect("set_repository_policy");
    }

    /// The repository's policy, or `None` when it has none.
    pub async fn policy(&self, repository: &str) -> Option<Value> {
        match self
            .ecr()
            .await
            .get_repository_policy()
            .repository_name(repository)
            .send()
            .await
        {
            Ok(out) => {
                Some(serde_json::from_str(out.policy_text().expect("text")).expect("policy JSON"))
            }
            Err(e) => {
                let code = aws_sdk_ecr::error::ProvideErrorMetadata::code(&e).map(str::to_string);
                assert_eq!(
                    code.as_deref(),
                    Some("RepositoryPolicyNotFoundException"),
                    "{e:?}"
                );
                None
            }
        }
    }

    /// Accounts our statement grants (sorted), from the principals' ARNs.
    pub async fn granted(&self, repository: &str) -> Vec<String> {
        self.policy(repository)
            .await
            .map(|p| granted_by(&p))
            .unwrap_or_default()
    }

    pub async fn repository_exists(&self, name: &str) -> bool {
        self.ecr()
            .await
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
            .is_ok()
    }

    pub async fn next_batch(&mut self) -> Value {
        self.stream.next_batch().await
    }

    /// What the table grants `user`, computed here independently of the
    /// code under test: Direct Pay rows with a 12-digit string account.
    pub async fn desired(&self, user: &str) -> Vec<String> {
        let out = self
            .dynamodb()
            .await
            .query()
            .table_name(TABLE)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user))
            .consistent_read(true)
            .send()
            .await
            .expect("query");
        let set: BTreeSet<String> = out
            .items()
            .iter()
            .filter(|i| {
                i.get("workspace_type")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some("Direct Pay")
            })
            .filter_map(|i| i.get("account_id").and_then(|v| v.as_s().ok()).cloned())
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        set.into_iter().collect()
    }
}
