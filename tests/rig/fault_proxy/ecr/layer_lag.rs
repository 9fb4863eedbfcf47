//! Layers PutImage does not see yet: ECR refuses a manifest PUT naming a
//! layer it lacks with `BLOB_UPLOAD_UNKNOWN` "Layers with digests '[...]'
//! required for pushing image into repository with name '...' in the
//! registry with id '...' do not exist" (oras-project/oras-py#54), and
//! parallel pushes of shared layers have met it right after the layers'
//! uploads completed (mapbox/ecs-conex#50). docker-registry 2.8 gives its
//! own form of it (`MANIFEST_BLOB_UNKNOWN`) when two pushes commit one blob
//! at once. [`ProxyOptions::layer_lag`](crate::ProxyOptions::layer_lag)
//! refuses the first that many manifest PUTs this way, whatever the registry
//! holds; never forwarded. Answered 400: the status of distribution's form; ECR's is not
//! documented (the client must not take a 404 here for "manifest unknown").

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::Answer;
use crate::fault_proxy::{bump, Shared};

impl Shared {
    /// ECR's refusal of a manifest whose layers it does not see, while
    /// refusals are left.
    pub(super) fn layers_not_found(&self, repo: &str, body: &[u8]) -> Option<Answer> {
        let left = self.opts.layer_lag;
        let n = self.counters.layers_not_found.load(Ordering::SeqCst);
        if n >= u64::from(left) {
            return None;
        }
        bump(&self.counters.layers_not_found);
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let digests = layer_digests(&doc).join(", ");
        let message = format!(
            "Layers with digests '[{digests}]' required for pushing image into repository with name '{repo}' in the registry with id '{}' do not exist",
            self.account()
        );
        Some(Answer::error(
            "400 Bad Request",
            "BLOB_UPLOAD_UNKNOWN",
            &message,
        ))
    }
}

/// The config's and the layers' digests of an image manifest (an index
/// names none).
fn layer_digests(doc: &Value) -> Vec<String> {
    let config = doc["config"]["digest"].as_str();
    let layers = doc["layers"].as_array().into_iter().flatten();
    config
        .into_iter()
        .chain(layers.filter_map(|l| l["digest"].as_str()))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_image_manifest_when_its_layers_are_named_then_config_comes_first() {
        let doc = serde_json::json!({
            "config": {"digest": "sha256:c"},
            "layers": [{"digest": "sha256:a"}, {"digest": "sha256:b"}]
        });

        assert_eq!(layer_digests(&doc), ["sha256:c", "sha256:a", "sha256:b"]);
        assert!(layer_digests(&serde_json::json!({"manifests": []})).is_empty());
    }
}
