//! moto, a source registry, and a target registry behind an ECR-like front
//! that knows only the repositories moto's ECR holds in the target account;
//! optionally an AWS front that hands out the target front's own tokens from
//! `ecr:GetAuthorizationToken`, so that registry tokens can expire.

use rig::{AwsFront, AwsFrontOptions, FaultProxy, ProxyOptions, Registry, Repositories};
use serde_json::Value;

pub const TARGET_ACCOUNT: &str = "222222222222";
pub const REGION: &str = "us-east-1";

pub fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ecr-bridge-push")
}

pub struct EcrStage {
    pub moto: rig::Moto,
    pub source: Registry,
    pub target: Registry,
    pub front: FaultProxy,
    /// In front of moto when the target's tokens come from `front`.
    pub aws: Option<AwsFront>,
}

impl EcrStage {
    pub fn new() -> EcrStage {
        Self::with(|o| o, false)
    }

    /// `front` adjusts the target front's options (repositories stay moto's);
    /// `issue_front_tokens`: the target's registry tokens are the front's own,
    /// issued through an AWS front (see [`rig::TokenRotation::Expiring`]).
    pub fn with(
        front: impl FnOnce(ProxyOptions) -> ProxyOptions,
        issue_front_tokens: bool,
    ) -> EcrStage {
        let moto = rig::Moto::start();
        let target = Registry::start(TARGET_ACCOUNT);
        let opts = front(ProxyOptions {
            repositories: Repositories::Moto {
                url: moto.url(),
                account: TARGET_ACCOUNT.into(),
                region: REGION.into(),
            },
            ..ProxyOptions::ecr()
        });
        let front = FaultProxy::start(&target, opts);
        let aws = issue_front_tokens.then(|| {
            let aws = AwsFront::start_with(&moto.url(), AwsFrontOptions::default());
            aws.set_tokens_for(TARGET_ACCOUNT, front.tokens());
            aws
        });
        EcrStage {
            moto,
            source: Registry::start(rig::DEFAULT_ACCOUNT),
            target,
            front,
            aws,
        }
    }

    /// AWS APIs as the replicator sees them: the AWS front if any, else moto.
    pub fn aws_url(&self) -> String {
        self.aws
            .as_ref()
            .map(|a| a.url())
            .unwrap_or_else(|| self.moto.url())
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        super::moto_sdk(&self.aws_url(), "test-secret-key").await
    }

    pub async fn replicator(
        &self,
        mapping: &Value,
    ) -> (
        ecr_bridge_aws::replicator::Replicator,
        image_replicator::config::Config,
    ) {
        let config = image_replicator::config::Config::from_env(&self.replicator_env(mapping))
            .expect("config");
        let replicator = config.build_with(self.sdk().await).expect("replicator");
        (replicator, config)
    }

    /// The replicator's environment for this stage (also for its binary).
    pub fn replicator_env(&self, mapping: &Value) -> std::collections::HashMap<String, String> {
        let endpoints = format!(
            "{}.dkr.ecr.{REGION}.amazonaws.com={},{TARGET_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com={}",
            self.source.account(),
            self.source.url(),
            self.front.url()
        );
        [
            ("REGISTRY_ENDPOINTS".to_string(), endpoints),
            ("MAX_ATTEMPTS".into(), "2".into()),
            ("MAPPING_JSON".into(), mapping.to_string()),
        ]
        .into()
    }

    pub fn exists_in_target(&self, repository: &str) -> bool {
        rig::moto_repository(&self.moto.url(), TARGET_ACCOUNT, REGION, repository).is_some()
    }

    /// Someone deletes the repository (and its images) behind the replicator's back.
    pub async fn delete_target_repository(&self, repository: &str) {
        super::ecr_as(&self.sdk().await, &role(TARGET_ACCOUNT))
            .await
            .delete_repository()
            .repository_name(repository)
            .force(true)
            .send()
            .await
            .unwrap();
    }
}

/// `events/image-push-tagged.json`, pointed at a pushed image.
pub fn push_event(repository: &str, digest: &str, tag: &str) -> Value {
    let path = format!(
        "{}/../events/image-push-tagged.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut e: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("json");
    e["detail"]["repository-name"] = repository.into();
    e["detail"]["image-digest"] = digest.into();
    e["detail"]["image-tag"] = tag.into();
    e
}
