//! What the replicator's tests feed it and read back: sample events
//! pointed at pushed images, the Kuali mapping, and moto's image records.

use ecr_bridge_aws::replicator::Replicator;
use image_replicator::config::Config;
use image_replicator::handler::{self, HandlerError};
use serde_json::{json, Value};

use super::stage::{role, REGION, TARGET};

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

/// `events/image-push-tagged.json`, pointed at a pushed image.
pub fn push_event(repository: &str, digest: &str, tag: &str) -> Value {
    event("image-push-tagged.json", repository, digest, Some(tag))
}

/// ECR's event for a deleted tag (events/image-delete.json).
pub fn delete_event(repository: &str, digest: &str, tag: &str) -> Value {
    event("image-delete.json", repository, digest, Some(tag))
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

/// Every `app-*` repository to `mirror/<suffix>` in the target account,
/// created on first push.
pub fn apps_mapping() -> Value {
    json!({"version": 1, "rules": [{
        "name": "apps", "match": {"prefix": "app-"},
        "destinations": [{"account": TARGET, "region": REGION, "role_arn": role(TARGET),
                          "external_id": "kuali-sync", "repository": "mirror/{suffix}"}],
        "create_repository": true
    }]})
}

pub async fn invoke(r: &Replicator, c: &Config, e: Value) -> Result<Value, HandlerError> {
    handler::handle(r, c, e).await
}

/// moto keeps ECR images in its own store, apart from the docker-registry
/// holding the bytes; deletes go through the control plane, so the test
/// records the image there the way ECR would have on push. The digest is
/// given because moto, unlike ECR, would otherwise derive it from the
/// layer digests instead of the manifest bytes.
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
        .image_digest(&layout.digest)
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
