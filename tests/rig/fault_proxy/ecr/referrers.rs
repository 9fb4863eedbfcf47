//! Referrer refusals: ECR's 405 `UNSUPPORTED` for a manifest PUT with a
//! media type that has parameters (`Content-Type`, or any media type or
//! `artifactType` in the body) or, separately, with a `subject` (an OCI 1.1
//! referrer). Never forwarded.

use serde_json::Value;

use super::Answer;
use crate::fault_proxy::Shared;
use crate::wire::Head;

impl Shared {
    /// 405 `UNSUPPORTED` for a manifest ECR would not take.
    pub(super) fn manifest_refusal(&self, head: &Head, body: &[u8]) -> Option<Answer> {
        if !self.opts.refuse_media_type_parameters && !self.opts.refuse_referrers {
            return None;
        }
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if self.opts.refuse_media_type_parameters {
            if let Some(mt) = parameterised_media_type(head.header("content-type"), &doc) {
                let msg = format!(
                    "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Unsupported media type {mt}: media types with parameters are not supported'"
                );
                return Some(Answer::error("405 Method Not Allowed", "UNSUPPORTED", &msg));
            }
        }
        if self.opts.refuse_referrers && doc.get("subject").is_some_and(|s| !s.is_null()) {
            let msg = "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Manifests with a subject (OCI 1.1 referrers) are not supported'";
            return Some(Answer::error("405 Method Not Allowed", "UNSUPPORTED", msg));
        }
        None
    }
}

/// A media type with parameters (`type/subtype;param=value`) among the
/// request's `Content-Type` and the manifest's media types and `artifactType`.
fn parameterised_media_type(content_type: Option<&str>, doc: &Value) -> Option<String> {
    let mut candidates: Vec<&str> = content_type.into_iter().collect();
    for v in [
        &doc["mediaType"],
        &doc["artifactType"],
        &doc["config"]["mediaType"],
    ] {
        candidates.extend(v.as_str());
    }
    for layer in doc["layers"].as_array().into_iter().flatten() {
        candidates.extend(layer["mediaType"].as_str());
    }
    candidates
        .into_iter()
        .find(|m| m.contains(';'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_manifests_when_media_types_are_checked_then_any_with_parameters_is_found() {
        let plain = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json"},
            "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}]
        });
        assert_eq!(
            parameterised_media_type(Some("application/vnd.oci.image.manifest.v1+json"), &plain),
            None
        );
        let bundle = "application/vnd.dev.sigstore.bundle+json;version=0.2";
        for pointer in [
            "/artifactType",
            "/config/mediaType",
            "/layers/0/mediaType",
            "/mediaType",
        ] {
            let mut doc = plain.clone();
            *doc.pointer_mut(pointer).unwrap() = Value::from(bundle);
            assert_eq!(
                parameterised_media_type(None, &doc).as_deref(),
                Some(bundle),
                "{pointer}"
            );
        }
        let ct = "application/vnd.oci.image.manifest.v1+json; charset=utf-8";
        assert_eq!(
            parameterised_media_type(Some(ct), &plain).as_deref(),
            Some(ct)
        );
    }
}
