//! The replicator's stage for end-to-end tests: moto for the AWS APIs (ECR
//! control plane, STS, SSM), one docker-registry per account for the
//! registry API. Shared by the replicator, ordering and confinement tests.

use aws_config::SdkConfig;
use ecr_bridge_aws::replicator::Replicator;
use image_replicator::config::Config;
use image_replicator::handler::{self, HandlerError};
use rig::{Moto, Registry};
use serde_json::{json, Value};

pub const SOURCE: &str = rig::DEFAULT_ACCOUNT; // moto's account for plain credentials
pub const TARGET: &str = "222222222222";
pub const OTHER: &str = "333333333333";
pub const REGION: &str = "us-east-1";

pub fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ecr-bridge-push")
}

/// moto plus a registry per account, wired together as in AWS.
pub struct Stage {
    pub moto: Moto,
    pub source: Registry,
    pub target: Registry,
    pub other: Registry,
}

impl Stage {
    pub fn new() -> Stage {
        Stage {
            moto: Moto::start(),
            source: Registry::start(SOURCE),
            target: Registry::start(TARGET),
            other: Registry::start(OTHER),
        }
    }

    pub fn endpoints(&self) -> String {
        [&self.source, &self.target, &self.other]
            .iter()
            .map(|r| format!("{}.dkr.ecr.{REGION}.amazonaws.com={}", r.account(), r.url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub async fn sdk(&self) -> SdkConfig {
        super::moto_sdk(&self.moto.url(), "test-secret-key").await
    }

    /// An ECR client acting in `account`, as the target role would.
    pub async fn ecr_in(&self, account: &str) -> aws_sdk_ecr::Client {
        super::ecr_as(&self.sdk().await, &role(account)).await
    }

    pub async fn replicator_with_env(&self, extra: &[(&str, &str)]) -> (Replicator, Config) {
        let mut vars: std::collections::HashMap<String, String> = [
            ("REGISTRY_ENDPOINTS".to_string(), self.endpoints()),
            ("MAX_ATTEMPTS".into(), "2".into()),
        ]
        .into();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_env(&vars).expect("config");
        let replicator = config.build_with(self.sdk().await).expect("replicator");
        (replicator, config)
    }

    pub async fn replicator(&self, mapping: &Value) -> (Replicator, Config) {
        self.replicator_with_env(&[("MAPPING_JSON", &mapping.to_string())])
            .await
    }
}

/// A sample event from `events/`, pointed at a pushed image.
pub fn event(file: &str, repository: &str, digest: &str, tag: Option<&str>) -> Value {
    let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut e: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("json");
    e["detail"]["repository-name"] = json!(repository);
    e["detail"]["image-digest"] = json!(digest);
    match tag {
        Some(t) => e["detail"]["image-tag"] = json!(t),
        None => {
            e["detail"].as_object_mut().unwrap().remove("image-tag");
        }
    }
    e
}

pub fn kuali_mapping() -> Value {
    let dest = |repo: &str| json!([{"account": TARGET, "region": REGION, "role_arn": role(TARGET), "external_id": "kuali-sync", "repository": repo}]);
    json!({"version": 1, "rules": [
        {"name": "kuali-coeus", "match": {"exact": "kuali-coeus"}, "destinations": dest("coeus"),
         "create_repository": {"tag_mutability": "IMMUTABLE", "scan_on_push": true, "encryption": {"type": "KMS"}}},
        {"name": "kuali-coeus-feature", "match": {"exact": "kuali-coeus-feature"}, "destinations": dest("coeus-feature"),
         "create_repository": true}
    ]})
}

pub async fn invoke(r: &Replicator, c: &Config, e: Value) -> Result<Value, HandlerError> {
    handler::handle(r, c, e).await
}

/// moto keeps ECR images in its own store, apart from the docker-registry
/// holding the bytes; deletes go through the control plane, so the test
/// records the image there the way ECR would have on push.
pub async fn put_image_record(
    ecr: &aws_sdk_ecr::Client,
    repo: &str,
    tag: &str,
    layout: &rig::Layout,
) {
    let manifest = String::from_utf8(layout.manifest_bytes()).unwrap();
    ecr.put_image()
        .repository_name(repo)
        .image_manifest(manifest)
        .image_manifest_media_type(&layout.media_type)
        .image_tag(tag)
        .send()
        .await
        .expect("put_image in moto");
}

pub async fn list_tags(ecr: &aws_sdk_ecr::Client, repo: &str) -> Vec<String> {
    let out = ecr
        .describe_images()
        .repository_name(repo)
        .send()
        .await
        .unwrap();
    out.image_details()
        .iter()
        .flat_map(|d| d.image_tags().iter().cloned())
        .collect()
}
