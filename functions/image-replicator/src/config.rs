//! The replicator's configuration, read from the environment once at
//! start-up. Every problem names its variable.

use std::sync::Arc;
use std::time::Duration;

use ecr_bridge::copy::CopyOptions;
use ecr_bridge::mapping::MappingConfig;
use ecr_bridge::registry::{RetryPolicy, Timeouts};
use ecr_bridge_aws::backfill::runs::{DynamoRunStore, RunStore};
use ecr_bridge_aws::env::{self, EnvError, Vars};
use ecr_bridge_aws::event_bus::{EventBridgeBus, EventBus};
use ecr_bridge_aws::mapping_store::{MappingSource, MappingStore};
use ecr_bridge_aws::registries::{EcrRegistries, RegistryEndpoints, SourceRole};
use ecr_bridge_aws::replicator::Replicator;
use ecr_bridge_aws::work_queue::{SqsWorkQueue, WorkQueue};

/// Where the mapping config lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingOrigin {
    /// `MAPPING_PARAMETER`: an SSM parameter name (String or SecureString).
    Parameter(String),
    /// `MAPPING_JSON`: the document itself (local runs, tests).
    Inline(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mapping: MappingOrigin,
    pub mapping_ttl: Duration,
    pub endpoints: RegistryEndpoints,
    pub source_role: SourceRole,
    pub blob_concurrency: usize,
    pub max_attempts: u32,
    pub session_name: String,
    pub metrics_namespace: String,
    /// `BACKFILL_QUEUE_URL`: the SQS queue backfill work items go to.
    pub backfill_queue_url: Option<String>,
    /// `BACKFILL_TABLE`: the DynamoDB table backfill runs are recorded in.
    pub backfill_table: Option<String>,
    /// `EVENT_BUS_NAME`: the EventBridge bus (name or ARN) completion
    /// events go to; none: no events.
    pub event_bus: Option<String>,
}

impl Config {
    pub fn from_env(vars: &dyn Vars) -> Result<Config, EnvError> {
        let mapping = match (
            env::optional(vars, "MAPPING_PARAMETER"),
            env::optional(vars, "MAPPING_JSON"),
        ) {
            (Some(_), Some(_)) => {
                return Err(EnvError::new(
                    "MAPPING_JSON",
                    "set either MAPPING_PARAMETER or MAPPING_JSON, not both",
                ))
            }
            (None, None) => return Err(EnvError::new(
                "MAPPING_PARAMETER",
                "not set: name the SSM parameter holding the mapping config (or give MAPPING_JSON)",
            )),
            (Some(name), None) => MappingOrigin::Parameter(name),
            (None, Some(json)) => {
                // Inline config is checked now: a typo fails the deployment, not the first push.
                MappingConfig::from_json(&json)
                    .map_err(|e| EnvError::new("MAPPING_JSON", e.to_string()))?;
                MappingOrigin::Inline(json)
            }
        };
        let endpoints = match env::optional(vars, "REGISTRY_ENDPOINTS") {
            Some(spec) => RegistryEndpoints::parse(&spec)
                .map_err(|e| EnvError::new("REGISTRY_ENDPOINTS", e))?,
            None => RegistryEndpoints::default(),
        };
        let assume = env::assume_role(vars, "SOURCE_ROLE_ARN", "SOURCE_ROLE_EXTERNAL_ID")?;
        let session_name = env::session_name(vars, "ROLE_SESSION_NAME", "ecr-bridge-replicator")?;
        Ok(Config {
            mapping,
            mapping_ttl: Duration::from_secs(env::number(
                vars,
                "MAPPING_TTL_SECONDS",
                60u64,
                0,
                86_400,
            )?),
            endpoints,
            source_role: SourceRole { assume },
            blob_concurrency: env::number(
                vars,
                "BLOB_CONCURRENCY",
                CopyOptions::default().blob_concurrency,
                1,
                64,
            )?,
            max_attempts: env::number(
                vars,
                "MAX_ATTEMPTS",
                RetryPolicy::default().max_attempts,
                1,
                20,
            )?,
            session_name,
            metrics_namespace: env::optional(vars, "METRICS_NAMESPACE")
                .unwrap_or_else(|| "ecr-bridge".into()),
            backfill_queue_url: match env::optional(vars, "BACKFILL_QUEUE_URL") {
                Some(url) if !url.starts_with("https://") && !url.starts_with("http://") => {
                    return Err(EnvError::new(
                        "BACKFILL_QUEUE_URL",
                        format!("expected an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>), got {:?}", ecr_bridge::text::clip(&url, 100)),
                    ))
                }
                other => other,
            },
            backfill_table: match env::optional(vars, "BACKFILL_TABLE") {
                Some(name) if !valid_table_name(&name) => {
                    return Err(EnvError::new(
                        "BACKFILL_TABLE",
                        format!("expected a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .), got {:?}", ecr_bridge::text::clip(&name, 100)),
                    ))
                }
                other => other,
            },
            event_bus: env::event_bus(vars, "EVENT_BUS_NAME")?,
        })
    }

    /// Builds the replicator with the default AWS configuration (the Lambda
    /// role's credentials; `AWS_ENDPOINT_URL` for local stand-ins).
    pub async fn build(&self) -> Result<Replicator, lambda_runtime::Error> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        self.build_with(sdk)
    }

    pub fn build_with(
        &self,
        sdk: aws_config::SdkConfig,
    ) -> Result<Replicator, lambda_runtime::Error> {
        let source = match &self.mapping {
            MappingOrigin::Inline(json) => MappingSource::Inline(json.clone()),
            MappingOrigin::Parameter(name) => MappingSource::Parameter {
                ssm: aws_sdk_ssm::Client::new(&sdk),
                name: name.clone(),
            },
        };
        let retry = RetryPolicy {
            max_attempts: self.max_attempts,
            ..RetryPolicy::default()
        };
        let queue = self
            .backfill_queue_url
            .as_ref()
            .map(|url| Arc::new(SqsWorkQueue::new(&sdk, url)) as Arc<dyn WorkQueue>);
        let runs = self.backfill_table.as_ref().map(|table| {
            Arc::new(DynamoRunStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
            )) as Arc<dyn RunStore>
        });
        let event_bus = self
            .event_bus
            .as_ref()
            .map(|bus| Arc::new(EventBridgeBus::new(&sdk, bus)) as Arc<dyn EventBus>);
        let registries = EcrRegistries::new(
            sdk,
            self.endpoints.clone(),
            retry,
            Timeouts::default(),
            &self.session_name,
        )?;
        let replicator = Replicator::new(
            MappingStore::new(source, self.mapping_ttl),
            registries,
            CopyOptions {
                blob_concurrency: self.blob_concurrency,
                ..CopyOptions::default()
            },
            self.source_role.clone(),
        );
        let replicator = match queue {
            Some(q) => replicator.with_backfill_queue(q),
            None => replicator,
        };
        let replicator = match runs {
            Some(r) => replicator.with_backfill_runs(r),
            None => replicator,
        };
        Ok(match event_bus {
            Some(bus) => replicator.with_event_bus(bus),
            None => replicator,
        })
    }
}

/// DynamoDB's table name rule.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecr_bridge_aws::env::vars_from;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        vars_from(pairs)
    }

    #[test]
    fn given_only_a_parameter_name_when_read_then_defaults_apply() {
        let c = Config::from_env(&vars(&[("MAPPING_PARAMETER", "/ecr-bridge/mapping")])).unwrap();
        assert_eq!(
            c.mapping,
            MappingOrigin::Parameter("/ecr-bridge/mapping".into())
        );
        assert_eq!(c.mapping_ttl, Duration::from_secs(60));
        assert_eq!(c.blob_concurrency, 6);
        assert_eq!(c.session_name, "ecr-bridge-replicator");
        assert!(c.endpoints.is_empty());
    }

    #[test]
    fn given_no_mapping_or_both_when_read_then_the_error_names_the_variable() {
        let e = Config::from_env(&vars(&[])).unwrap_err();
        assert_eq!(e.variable, "MAPPING_PARAMETER");
        let e = Config::from_env(&vars(&[("MAPPING_PARAMETER", "p"), ("MAPPING_JSON", "{}")]))
            .unwrap_err();
        assert_eq!(e.variable, "MAPPING_JSON");
    }

    #[test]
    fn given_invalid_inline_mapping_when_read_then_start_up_fails_naming_the_field() {
        let json = r#"{"rules":[{"match":{"exact":"a"},"destinations":[{"account":"123","region":"us-east-1"}]}]}"#;
        let e = Config::from_env(&vars(&[("MAPPING_JSON", json)])).unwrap_err();
        assert_eq!(e.variable, "MAPPING_JSON");
        assert!(
            e.problem.contains("rules[0].destinations[0].account"),
            "{e}"
        );
    }

    #[test]
    fn given_bad_values_when_read_then_each_names_its_variable() {
        let base = ("MAPPING_PARAMETER", "p");
        for (var, value) in [
            ("MAPPING_TTL_SECONDS", "-1"),
            ("BLOB_CONCURRENCY", "0"),
            ("MAX_ATTEMPTS", "many"),
            ("SOURCE_ROLE_ARN", "not-an-arn"),
            (
                "REGISTRY_ENDPOINTS",
                "x.dkr.ecr.us-east-1.amazonaws.com=http://192.168.1.10:5000",
            ),
            ("ROLE_SESSION_NAME", "has spaces"),
            ("SOURCE_ROLE_EXTERNAL_ID", "needs-a-role"),
            ("BACKFILL_QUEUE_URL", "my-queue"),
            ("BACKFILL_TABLE", "no spaces allowed"),
            ("BACKFILL_TABLE", "ab"),
        ] {
            let e = Config::from_env(&vars(&[base, (var, value)])).unwrap_err();
            assert_eq!(e.variable, var, "{e}");
        }
    }
}
