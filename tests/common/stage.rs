//! The stage of an end-to-end test, made by one builder: moto for the AWS
//! APIs (ECR control plane, STS, SSM, SQS, DynamoDB), one docker-registry
//! per account for the registry API, and on demand an ECR-like front
//! before the target's registry and an AWS front before moto.
//!
//! ```ignore
//! // moto and a registry per account, wired together as in AWS.
//! let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
//! // The target behind ECR's behaviours, knowing only the repositories
//! // moto's ECR holds there; its tokens the front's own, issued through
//! // an AWS front's GetAuthorizationToken, so that they can expire.
//! let stage = Stage::builder()
//!     .accounts(&[SOURCE, TARGET])
//!     .ecr_front(ProxyOptions { tokens: Some(expiring), ..ProxyOptions::ecr() })
//!     .front_tokens()
//!     .build();
//! // moto behind an AWS front (its call log, failures on demand), no registry.
//! let stage = Stage::builder().aws_front().build();
//! ```

use std::collections::HashMap;

use aws_config::SdkConfig;
use ecr_bridge_aws::replicator::Replicator;
use image_replicator::config::Config;
use rig::{AwsFront, AwsFrontOptions, FaultProxy, Moto, ProxyOptions, Registry, Repositories};
use serde_json::Value;

/// moto's account for plain credentials: the source's.
pub const SOURCE: &str = rig::DEFAULT_ACCOUNT;
pub const TARGET: &str = "222222222222";
pub const OTHER: &str = "333333333333";
pub const REGION: &str = "us-east-1";
/// The secret key of the stage's static credentials.
pub const SECRET_KEY: &str = "test-secret-key";

/// The push role of `account`.
pub fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ecr-bridge-push")
}

/// moto, a registry per account, and the fronts asked for.
pub struct Stage {
    pub moto: Moto,
    /// One per account, in the builder's order.
    registries: Vec<Registry>,
    front: Option<FaultProxy>,
    aws: Option<AwsFront>,
}

/// What [`Stage::builder`] will start.
#[derive(Default)]
pub struct StageBuilder {
    accounts: Vec<String>,
    tls: bool,
    ecr_front: Option<ProxyOptions>,
    aws_front: bool,
    front_tokens: bool,
    ecr_page_cap: Option<usize>,
}

impl StageBuilder {
    /// A docker-registry per account, in this order: the first is the
    /// source ([`Stage::source`]), the second the target, the third
    /// [`Stage::other`].
    pub fn accounts(mut self, accounts: &[&str]) -> Self {
        self.accounts = accounts.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The registries serve HTTPS with certificates of the rig's CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// An ECR-like front ([`FaultProxy`]) before the target's registry,
    /// with `opts` and the repositories moto's ECR holds in the target
    /// account ([`Repositories::Moto`]): the replicator reaches the target
    /// through it ([`Stage::front`]).
    pub fn ecr_front(mut self, opts: ProxyOptions) -> Self {
        self.ecr_front = Some(opts);
        self
    }

    /// An AWS front before moto ([`Stage::aws`]): what the code under test
    /// is given as its AWS endpoint ([`Stage::aws_url`]).
    pub fn aws_front(mut self) -> Self {
        self.aws_front = true;
        self
    }

    /// An AWS front ([`Self::aws_front`]) cutting ECR list pages at `cap`
    /// ([`AwsFrontOptions::ecr_page_cap`]), so a few dozen entries already
    /// span several pages.
    pub fn ecr_page_cap(mut self, cap: usize) -> Self {
        self.aws_front = true;
        self.ecr_page_cap = Some(cap);
        self
    }

    /// The target's registry tokens are the ECR front's own
    /// ([`rig::TokenRotation::Expiring`] makes them expire), issued through
    /// the AWS front's `GetAuthorizationToken`. Implies [`Self::aws_front`].
    pub fn front_tokens(mut self) -> Self {
        self.aws_front = true;
        self.front_tokens = true;
        self
    }

    pub fn build(self) -> Stage {
        let moto = Moto::start();
        let registries: Vec<Registry> = self
            .accounts
            .iter()
            .map(|a| {
                if self.tls {
                    Registry::start_tls(a)
                } else {
                    Registry::start(a)
                }
            })
            .collect();
        let front = self.ecr_front.map(|opts| {
            let target = registries
                .get(1)
                .expect("an ECR front needs a target account");
            let opts = ProxyOptions {
                repositories: Repositories::Moto {
                    url: moto.url(),
                    account: target.account().to_string(),
                    region: REGION.into(),
                },
                ..opts
            };
            FaultProxy::start(target, opts)
        });
        let aws = self.aws_front.then(|| {
            let opts = AwsFrontOptions {
                ecr_page_cap: self.ecr_page_cap,
                ..AwsFrontOptions::default()
            };
            let aws = AwsFront::start_with(&moto.url(), opts);
            if self.front_tokens {
                let front = front.as_ref().expect("front tokens need an ECR front");
                aws.set_tokens_for(&self.accounts[1], front.tokens());
            }
            aws
        });
        Stage {
            moto,
            registries,
            front,
            aws,
        }
    }
}

impl Stage {
    pub fn builder() -> StageBuilder {
        StageBuilder::default()
    }

    /// The first account's registry.
    pub fn source(&self) -> &Registry {
        &self.registries[0]
    }

    /// The second account's registry (behind [`Stage::front`], if any).
    pub fn target(&self) -> &Registry {
        &self.registries[1]
    }

    /// The third account's registry.
    pub fn other(&self) -> &Registry {
        &self.registries[2]
    }

    /// The registry of `account`, one the builder was given.
    pub fn registry_of(&self, account: &str) -> &Registry {
        self.registries
            .iter()
            .find(|r| r.account() == account)
            .unwrap_or_else(|| panic!("no registry for account {account} on this stage"))
    }

    /// The ECR-like front before the target ([`StageBuilder::ecr_front`]).
    pub fn front(&self) -> &FaultProxy {
        self.front
            .as_ref()
            .expect("a stage built with an ECR front")
    }

    /// The AWS front before moto ([`StageBuilder::aws_front`]).
    pub fn aws(&self) -> &AwsFront {
        self.aws.as_ref().expect("a stage built with an AWS front")
    }

    /// `REGISTRY_ENDPOINTS`: each account's registry host as ECR names it,
    /// mapped to its URL (the target's front's, if it has one).
    pub fn endpoints(&self) -> String {
        self.registries
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let url = match (&self.front, i) {
                    (Some(front), 1) => front.url(),
                    _ => r.url(),
                };
                format!("{}.dkr.ecr.{REGION}.amazonaws.com={url}", r.account())
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// AWS APIs as the code under test sees them: the AWS front if any,
    /// else moto.
    pub fn aws_url(&self) -> String {
        self.aws
            .as_ref()
            .map(|a| a.url())
            .unwrap_or_else(|| self.moto.url())
    }

    /// The SDK configuration for [`Stage::aws_url`].
    pub async fn sdk(&self) -> SdkConfig {
        super::moto_sdk(&self.aws_url(), SECRET_KEY).await
    }

    /// An ECR client acting in `account`, as its push role would.
    pub async fn ecr_in(&self, account: &str) -> aws_sdk_ecr::Client {
        super::ecr_as(&self.sdk().await, &role(account)).await
    }

    /// The replicator's environment (also for its binary): the stage's
    /// endpoints, two attempts, and `extra` (which may override them).
    pub fn replicator_env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("REGISTRY_ENDPOINTS".to_string(), self.endpoints()),
            ("MAX_ATTEMPTS".into(), "2".into()),
        ]
        .into();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    pub async fn replicator_with_env(&self, extra: &[(&str, &str)]) -> (Replicator, Config) {
        let config = Config::from_env(&self.replicator_env(extra)).expect("config");
        let replicator = config.build_with(self.sdk().await).expect("replicator");
        (replicator, config)
    }

    /// The replicator with `mapping` as its `MAPPING_JSON`.
    pub async fn replicator(&self, mapping: &Value) -> (Replicator, Config) {
        self.replicator_with_env(&[("MAPPING_JSON", &mapping.to_string())])
            .await
    }

    /// Whether moto's ECR holds `repository` in the target account.
    pub fn exists_in_target(&self, repository: &str) -> bool {
        rig::moto_repository(
            &self.moto.url(),
            self.target().account(),
            REGION,
            repository,
        )
        .is_some()
    }

    /// Someone deletes the repository (and its images) behind the replicator's back.
    pub async fn delete_target_repository(&self, repository: &str) {
        self.ecr_in(self.target().account())
            .await
            .delete_repository()
            .repository_name(repository)
            .force(true)
            .send()
            .await
            .unwrap();
    }
}
