//! Access sync's configuration, read from the environment once at start-up.
//! Every problem names its variable.

use std::collections::BTreeSet;
use std::sync::Arc;

use ecr_bridge::access::naming::DEFAULT_PREFIX;
use ecr_bridge::access::policy::{DEFAULT_PULL_ACTIONS, DEFAULT_SID};
use ecr_bridge::access::{PolicySpec, Selection};
use ecr_bridge::ids::{AssumeRole, Region};
use ecr_bridge::reference::is_valid_ecr_repository_name;
use ecr_bridge_aws::access_sync::runs::ReconcileRuns;
use ecr_bridge_aws::access_sync::{
    self, AccessSync, Attributes, Fanout, MissingRepository, Settings,
};
use ecr_bridge_aws::env::{self, EnvError, Vars};
use ecr_bridge_aws::event_bus::EventBridgeBus;
use ecr_bridge_aws::sts;
use ecr_bridge_aws::work_queue::SqsWorkQueue;

pub const DEFAULT_WORKSPACE_TYPE: &str = "Direct Pay";
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_CONVERGE_ROUNDS: u32 = 3;
pub const DEFAULT_SESSION_NAME: &str = "ecr-bridge-access-sync";

#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// Where the repositories are.
    pub ecr_region: Region,
    /// The role to assume in the account owning the repositories (with its
    /// ExternalId); `None` for the function's own account.
    pub ecr_assume: Option<AssumeRole>,
    pub session_name: String,
    pub metrics_namespace: String,
    /// Where a full reconcile fans out; `None`: it runs in one invocation.
    pub fanout: Option<FanoutConfig>,
    /// `EVENT_BUS_NAME`: the EventBridge bus access events go to.
    pub event_bus: Option<String>,
}

/// `RECONCILE_QUEUE_URL`, `RECONCILE_TABLE` and `RECONCILE_SEGMENTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutConfig {
    pub queue_url: String,
    pub table: String,
    pub segments: u32,
}

impl Config {
    pub fn from_env(vars: &dyn Vars) -> Result<Config, EnvError> {
        let table = env::optional(vars, "TABLE_NAME")
            .ok_or_else(|| EnvError::new("TABLE_NAME", "not set: name the DynamoDB users table"))?;
        if !valid_table(&table) {
            return Err(EnvError::new(
                "TABLE_NAME",
                "must be a table name (3-255 characters of letters, digits, _ . -) or a table ARN",
            ));
        }
        let prefix =
            env::optional(vars, "REPOSITORY_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.into());
        // Checked with a one-character user: the prefix must be a valid
        // name of its own, and never empty (orphans are found by prefix).
        if prefix.ends_with('/') || !is_valid_ecr_repository_name(&format!("{prefix}/a")) {
            return Err(EnvError::new(
                "REPOSITORY_PREFIX",
                format!("{prefix:?} is not a valid ECR repository name prefix (lower case, digits, single . _ - or / between them)"),
            ));
        }
        let workspace_type =
            env::optional(vars, "WORKSPACE_TYPE").unwrap_or_else(|| DEFAULT_WORKSPACE_TYPE.into());
        let allowed_statuses = env::optional(vars, "ALLOWED_REQUEST_STATUSES").map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<BTreeSet<String>>()
        });
        if allowed_statuses.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(EnvError::new(
                "ALLOWED_REQUEST_STATUSES",
                "lists no status; unset it to accept every status",
            ));
        }
        let attributes = Attributes {
            user_id: attribute(vars, "USER_ID_ATTRIBUTE", "user_id")?,
            account_id: attribute(vars, "ACCOUNT_ID_ATTRIBUTE", "account_id")?,
            workspace_type: attribute(vars, "WORKSPACE_TYPE_ATTRIBUTE", "workspace_type")?,
            request_status: attribute(vars, "REQUEST_STATUS_ATTRIBUTE", "request_status")?,
            row_id: attribute(vars, "ROW_ID_ATTRIBUTE", "bmh_workspace_id")?,
        };

        let sid = env::optional(vars, "STATEMENT_SID").unwrap_or_else(|| DEFAULT_SID.into());
        // IAM's Sid grammar: ASCII letters and digits.
        if sid.len() > 100 || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(EnvError::new(
                "STATEMENT_SID",
                "must be 1-100 ASCII letters and digits",
            ));
        }
        let actions: Vec<String> = match env::optional(vars, "PULL_ACTIONS") {
            None => DEFAULT_PULL_ACTIONS.iter().map(|a| a.to_string()).collect(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        };
        if actions.is_empty() {
            return Err(EnvError::new("PULL_ACTIONS", "lists no action"));
        }
        if let Some(bad) = actions.iter().find(|a| !valid_action(a)) {
            return Err(EnvError::new(
                "PULL_ACTIONS",
                format!("{bad:?} is not an ECR action like ecr:BatchGetImage"),
            ));
        }

        let ecr_region = match env::optional(vars, "ECR_REGION")
            .or_else(|| env::optional(vars, "AWS_REGION"))
        {
            Some(r) => r,
            None => return Err(EnvError::new(
                "ECR_REGION",
                "not set, and AWS_REGION is not set either: name the region of the repositories",
            )),
        };
        let ecr_region: Region = ecr_region.parse().map_err(|_| {
            EnvError::new("ECR_REGION", format!("{ecr_region:?} is not an AWS region"))
        })?;
        let ecr_assume = env::assume_role(vars, "ECR_ROLE_ARN", "ECR_ROLE_EXTERNAL_ID")?;
        let session_name = env::session_name(vars, "ROLE_SESSION_NAME", DEFAULT_SESSION_NAME)?;
        let missing_repository = match env::optional(vars, "MISSING_REPOSITORY")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("skip") => MissingRepository::Skip,
            Some("create") => MissingRepository::Create,
            Some(other) => {
                return Err(EnvError::new(
                    "MISSING_REPOSITORY",
                    format!("must be skip or create (got {other:?})"),
                ))
            }
        };
        let scan_page_size = match env::optional(vars, "SCAN_PAGE_SIZE") {
            None => None,
            Some(_) => Some(env::number(vars, "SCAN_PAGE_SIZE", 0i32, 1, 100_000)?),
        };

        let fanout = fanout_config(vars)?;

        Ok(Config {
            settings: Settings {
                table,
                attributes,
                prefix,
                selection: Selection {
                    workspace_type,
                    allowed_statuses,
                },
                policy: PolicySpec::new(
                    sid,
                    actions,
                    PolicySpec::partition_of(ecr_region.as_str()),
                ),
                missing_repository,
                concurrency: env::number(
                    vars,
                    "RECONCILE_CONCURRENCY",
                    DEFAULT_CONCURRENCY,
                    1,
                    64,
                )?,
                scan_page_size,
                converge_rounds: env::number(
                    vars,
                    "CONVERGE_ROUNDS",
                    DEFAULT_CONVERGE_ROUNDS,
                    1,
                    10,
                )?,
                collision_candidates: env::number(
                    vars,
                    "COLLISION_CANDIDATES",
                    access_sync::DEFAULT_COLLISION_CANDIDATES,
                    1,
                    1024,
                )?,
            },
            ecr_region,
            ecr_assume,
            session_name,
            metrics_namespace: env::optional(vars, "METRICS_NAMESPACE")
                .unwrap_or_else(|| "ecr-bridge".into()),
            fanout,
            event_bus: env::event_bus(vars, "EVENT_BUS_NAME")?,
        })
    }

    /// Builds the use case with the default AWS configuration (the Lambda
    /// role's credentials; `AWS_ENDPOINT_URL` for local stand-ins).
    pub async fn build(&self) -> Result<AccessSync, lambda_runtime::Error> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(self.build_with(sdk).await)
    }

    /// The table is read with the function's own credentials (its account
    /// and region); ECR through the role, in `ECR_REGION`.
    pub async fn build_with(&self, sdk: aws_config::SdkConfig) -> AccessSync {
        let ecr = sts::ecr_client(
            &sdk,
            &self.ecr_region,
            self.ecr_assume.as_ref(),
            &self.session_name,
        )
        .await;
        tracing::info!(
            table = %self.settings.table,
            prefix = %self.settings.prefix,
            ecr_region = %self.ecr_region,
            ecr_role = self
                .ecr_assume
                .as_ref()
                .map_or("(own account)", |a| a.role_arn.as_str()),
            "access sync configured"
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sync = AccessSync::new(dynamodb.clone(), ecr, self.settings.clone());
        let sync = match &self.event_bus {
            Some(bus) => sync.with_event_bus(Arc::new(EventBridgeBus::new(&sdk, bus))),
            None => sync,
        };
        match &self.fanout {
            None => sync,
            Some(f) => {
                tracing::info!(queue = %f.queue_url, table = %f.table, segments = f.segments, "full reconciles fan out");
                sync.with_fanout(Fanout {
                    queue: Box::new(SqsWorkQueue::new(&sdk, &f.queue_url)),
                    runs: ReconcileRuns::new(dynamodb, &f.table),
                    segments: f.segments,
                })
            }
        }
    }
}

/// The queue and the run table go together: one without the other is a
/// half-finished deployment, named at start-up.
fn fanout_config(vars: &dyn Vars) -> Result<Option<FanoutConfig>, EnvError> {
    let queue_url = env::optional(vars, "RECONCILE_QUEUE_URL");
    let table = env::optional(vars, "RECONCILE_TABLE");
    let (queue_url, table) = match (queue_url, table) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(EnvError::new(
                "RECONCILE_TABLE",
                "not set, but RECONCILE_QUEUE_URL is: a fanned-out reconcile needs both",
            ))
        }
        (None, Some(_)) => {
            return Err(EnvError::new(
                "RECONCILE_QUEUE_URL",
                "not set, but RECONCILE_TABLE is: a fanned-out reconcile needs both",
            ))
        }
        (Some(q), Some(t)) => (q, t),
    };
    if !(queue_url.starts_with("https://") || queue_url.starts_with("http://")) {
        return Err(EnvError::new(
            "RECONCILE_QUEUE_URL",
            format!(
                "expected an SQS queue URL, got {:?}",
                ecr_bridge::text::clip(&queue_url, 100)
            ),
        ));
    }
    if table.starts_with("arn:") || !valid_table(&table) {
        return Err(EnvError::new(
            "RECONCILE_TABLE",
            format!(
                "expected a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .), got {:?}",
                ecr_bridge::text::clip(&table, 100)
            ),
        ));
    }
    let segments = env::number(
        vars,
        "RECONCILE_SEGMENTS",
        access_sync::DEFAULT_SEGMENTS,
        1,
        100,
    )?;
    Ok(Some(FanoutConfig {
        queue_url,
        table,
        segments,
    }))
}

fn attribute(vars: &dyn Vars, name: &str, default: &str) -> Result<String, EnvError> {
    let value = env::optional(vars, name).unwrap_or_else(|| default.to_string());
    if value.len() > 255 {
        return Err(EnvError::new(
            name,
            "an attribute name is at most 255 characters",
        ));
    }
    Ok(value)
}

fn valid_table(t: &str) -> bool {
    if t.starts_with("arn:") {
        return t.contains(":dynamodb:") && t.contains(":table/");
    }
    (3..=255).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn valid_action(a: &str) -> bool {
    a.strip_prefix("ecr:")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecr_bridge_aws::env::vars_from;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        vars_from(pairs)
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![("TABLE_NAME", "users"), ("AWS_REGION", "us-east-1")]
    }

    #[test]
    fn given_only_a_table_when_read_then_gen3_defaults_apply() {
        let c = Config::from_env(&vars(&minimal())).unwrap();
        let s = &c.settings;
        assert_eq!(s.table, "users");
        assert_eq!(s.prefix, "nextflow-approved");
        assert_eq!(s.selection.workspace_type, "Direct Pay");
        assert_eq!(s.selection.allowed_statuses, None);
        assert_eq!(s.attributes, Attributes::default());
        assert_eq!(s.policy, PolicySpec::default_for("aws"));
        assert_eq!(s.missing_repository, MissingRepository::Skip);
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.scan_page_size, None);
        assert_eq!(s.converge_rounds, 3);
        assert_eq!(s.collision_candidates, 64);
        assert_eq!(
            c.ecr_region, "us-east-1",
            "ECR_REGION falls back to AWS_REGION"
        );
        assert_eq!(c.ecr_assume.as_ref().map(|a| &a.role_arn), None);
        assert_eq!(c.session_name, "ecr-bridge-access-sync");
        assert_eq!(c.fanout, None, "a full reconcile runs in one invocation");
    }

    #[test]
    fn given_the_reconcile_queue_and_table_when_read_then_full_reconciles_fan_out() {
        let mut v = minimal();
        v.push((
            "RECONCILE_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/q",
        ));
        v.push(("RECONCILE_TABLE", "runs"));
        let c = Config::from_env(&vars(&v)).unwrap();
        let f = c.fanout.expect("fan-out");
        assert_eq!((f.table.as_str(), f.segments), ("runs", 4));
        for (bad, var) in [
            (
                vec![("RECONCILE_QUEUE_URL", "https://q")],
                "RECONCILE_TABLE",
            ),
            (vec![("RECONCILE_TABLE", "runs")], "RECONCILE_QUEUE_URL"),
            (
                vec![("RECONCILE_QUEUE_URL", "q"), ("RECONCILE_TABLE", "runs")],
                "RECONCILE_QUEUE_URL",
            ),
            (
                vec![
                    ("RECONCILE_QUEUE_URL", "https://q"),
                    ("RECONCILE_TABLE", "a b"),
                ],
                "RECONCILE_TABLE",
            ),
            (
                vec![
                    ("RECONCILE_QUEUE_URL", "https://q"),
                    ("RECONCILE_TABLE", "runs"),
                    ("RECONCILE_SEGMENTS", "0"),
                ],
                "RECONCILE_SEGMENTS",
            ),
        ] {
            let mut v = minimal();
            v.extend(bad);
            let e = Config::from_env(&vars(&v)).unwrap_err();
            assert_eq!(e.variable, var, "{e}");
        }
    }

    #[test]
    fn given_every_variable_when_read_then_each_is_used() {
        let c = Config::from_env(&vars(&[
            (
                "TABLE_NAME",
                "arn:aws:dynamodb:us-east-1:123456789012:table/users",
            ),
            ("REPOSITORY_PREFIX", "team/approved"),
            ("WORKSPACE_TYPE", "STRIDES Credits"),
            ("ALLOWED_REQUEST_STATUSES", "active, above limit"),
            ("USER_ID_ATTRIBUTE", "uid"),
            ("ACCOUNT_ID_ATTRIBUTE", "acct"),
            ("WORKSPACE_TYPE_ATTRIBUTE", "type"),
            ("REQUEST_STATUS_ATTRIBUTE", "status"),
            ("ROW_ID_ATTRIBUTE", "ws"),
            ("STATEMENT_SID", "Pull"),
            (
                "PULL_ACTIONS",
                "ecr:BatchGetImage,ecr:GetDownloadUrlForLayer",
            ),
            ("ECR_REGION", "cn-north-1"),
            ("ECR_ROLE_ARN", "arn:aws:iam::222222222222:role/ecr-access"),
            ("ECR_ROLE_EXTERNAL_ID", "gen3-access"),
            ("MISSING_REPOSITORY", "CREATE"),
            ("RECONCILE_CONCURRENCY", "16"),
            ("SCAN_PAGE_SIZE", "500"),
            ("CONVERGE_ROUNDS", "5"),
            ("COLLISION_CANDIDATES", "256"),
            ("METRICS_NAMESPACE", "gen3"),
        ]))
        .unwrap();
        let s = &c.settings;
        assert_eq!(s.prefix, "team/approved");
        assert_eq!(
            s.selection
                .allowed_statuses
                .as_ref()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            ["above limit", "active"]
        );
        assert_eq!(s.attributes.user_id, "uid");
        assert_eq!(s.attributes.row_id, "ws");
        assert_eq!(s.policy.sid, "Pull");
        assert_eq!(
            s.policy.actions,
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        );
        assert_eq!(s.policy.partition, "aws-cn");
        assert_eq!(s.missing_repository, MissingRepository::Create);
        assert_eq!(
            (s.concurrency, s.scan_page_size, s.converge_rounds),
            (16, Some(500), 5)
        );
        assert_eq!(s.collision_candidates, 256);
        assert_eq!(
            c.ecr_assume
                .as_ref()
                .and_then(|a| a.external_id.as_ref())
                .map(|e| e.as_str()),
            Some("gen3-access")
        );
        assert_eq!(c.metrics_namespace, "gen3");
    }

    #[test]
    fn given_bad_values_when_read_then_each_names_its_variable() {
        for (var, value) in [
            ("TABLE_NAME", "x"),
            ("REPOSITORY_PREFIX", "Nextflow"),
            ("REPOSITORY_PREFIX", "a//b"),
            ("REPOSITORY_PREFIX", "approved/"),
            ("ALLOWED_REQUEST_STATUSES", " , "),
            ("STATEMENT_SID", "Allow-Pull"),
            ("PULL_ACTIONS", "s3:GetObject"),
            ("PULL_ACTIONS", ","),
            ("ECR_REGION", "US East"),
            ("ECR_ROLE_ARN", "role/x"),
            ("ECR_ROLE_EXTERNAL_ID", "needs-a-role"),
            ("MISSING_REPOSITORY", "fail"),
            ("RECONCILE_CONCURRENCY", "0"),
            ("SCAN_PAGE_SIZE", "-5"),
            ("CONVERGE_ROUNDS", "100"),
            ("COLLISION_CANDIDATES", "0"),
            ("COLLISION_CANDIDATES", "5000"),
            ("ROLE_SESSION_NAME", "has spaces"),
            ("USER_ID_ATTRIBUTE", &"a".repeat(300)),
        ] {
            let mut v = vars(&minimal());
            v.insert(var.to_string(), value.to_string());
            let e = Config::from_env(&v).unwrap_err();
            assert_eq!(e.variable, var, "{var}={value}: {e}");
        }
    }

    #[test]
    fn given_no_table_or_no_region_when_read_then_the_error_names_the_variable() {
        assert_eq!(
            Config::from_env(&vars(&[("AWS_REGION", "us-east-1")]))
                .unwrap_err()
                .variable,
            "TABLE_NAME"
        );
        assert_eq!(
            Config::from_env(&vars(&[("TABLE_NAME", "users")]))
                .unwrap_err()
                .variable,
            "ECR_REGION"
        );
    }
}
