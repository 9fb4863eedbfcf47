//! The work item's format: one image action in the shape of ECR's `ECR
//! Image Action` event, so the replicator takes a backfilled image through
//! the same path as a push, with every replicated tag in `image-tags`.
//! Written here by backfill ([`work_item`]) and read here for ECR's events
//! and work items alike ([`parse_image_action`]); only the EventBridge
//! envelope type around the detail is the caller's, as it is a Lambda type.

use ecr_bridge::ids::{AccountId, Digest, Region, RepositoryName};
use ecr_bridge::reference::validate_tag;
use ecr_bridge::text::{clip, json_kind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::RunId;
use crate::image_action::{ActionKind, ImageAction};

pub const DETAIL_TYPE: &str = "ECR Image Action";

/// The `source` of the image actions a backfill enqueues. Not `aws.ecr`:
/// nobody should mistake them for events ECR sent.
pub const BACKFILL_SOURCE: &str = "ecr-bridge.backfill";

/// The `detail` of an ECR Image Action (the `aws.ecr@ECRImageAction` schema).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageActionDetail {
    pub result: String,
    pub action_type: String,
    pub repository_name: String,
    pub image_digest: String,
    #[serde(default)]
    pub image_tag: Option<String>,
    /// Backfill work items name every replicated tag of the image.
    #[serde(default)]
    pub image_tags: Option<Vec<String>>,
    #[serde(default)]
    pub manifest_media_type: Option<String>,
    #[serde(default)]
    pub artifact_media_type: Option<String>,
}

/// What the parser needs of the envelope, read by the caller.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub account: Option<String>,
    pub region: Option<String>,
    pub detail: ImageActionDetail,
}

/// What an image action payload asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Action(ImageAction),
    /// Valid, but not ours to act on (another detail type, a failed push…).
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed event: {0}")]
    Shape(String),
    #[error("invalid event field {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

/// One image to replicate, as the work item's body: the ECR event's shape
/// with every replicated tag in `image-tags`.
pub fn work_item(
    account: &str,
    region: &str,
    repository: &str,
    digest: &str,
    tags: &[String],
    run: Option<&RunId>,
) -> String {
    let short: String = digest
        .rsplit(':')
        .next()
        .unwrap_or("")
        .chars()
        .take(16)
        .collect();
    let mut detail = json!({
        "result": "SUCCESS",
        "action-type": "PUSH",
        "repository-name": repository,
        "image-digest": digest,
        "image-tags": tags,
    });
    if let Some(first) = tags.first() {
        detail["image-tag"] = json!(first);
    }
    if let Some(run) = run {
        detail[RUN_FIELD] = json!(run);
    }
    json!({
        "version": "0",
        "id": format!("backfill-{short}"),
        "detail-type": DETAIL_TYPE,
        "source": BACKFILL_SOURCE,
        "account": account,
        "region": region,
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

/// Where a work item names the backfill run that enqueued it (counted
/// there when it is done). Not an ECR field: ECR's events have none.
pub const RUN_FIELD: &str = "backfill-run";

/// The backfill run a work item belongs to, if it names one.
pub fn run_of(body: &Value) -> Result<Option<RunId>, EventError> {
    match body.get("detail").and_then(|d| d.get(RUN_FIELD)) {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| EventError::Field {
                field: "detail.backfill-run",
                reason: clip(&e.to_string(), 200),
            }),
    }
}

/// The payload as a JSON object, or why it is not one.
pub fn as_object(payload: &Value) -> Result<&Map<String, Value>, EventError> {
    payload.as_object().ok_or_else(|| {
        EventError::Shape(format!(
            "expected a JSON object, got {}",
            json_kind(payload)
        ))
    })
}

/// An ECR Image Action, from ECR through EventBridge or from a backfill.
/// `read_envelope` deserializes the whole payload once `source` and
/// `detail-type` say it is one; only then are the fields checked.
pub fn parse_image_action(
    payload: &Value,
    read_envelope: impl FnOnce(&Value) -> Result<Envelope, EventError>,
) -> Result<Parsed, EventError> {
    let envelope = as_object(payload)?;
    let text = |k: &str| envelope.get(k).and_then(Value::as_str);
    let from_backfill = text("source") == Some(BACKFILL_SOURCE);
    match (text("source"), text("detail-type")) {
        (Some("aws.ecr") | Some(BACKFILL_SOURCE), Some(DETAIL_TYPE)) => {}
        (Some(source), Some(detail_type)) => {
            return Ok(Parsed::Ignored(format!(
                "{} / {} is not an ECR Image Action",
                clip(source, 100),
                clip(detail_type, 100)
            )))
        }
        _ => {
            return Err(EventError::Shape(
                "missing string fields \"source\" and \"detail-type\"".into(),
            ))
        }
    }
    let event = read_envelope(payload)?;
    let d = event.detail;
    if d.result != "SUCCESS" {
        return Ok(Parsed::Ignored(format!(
            "result is {:?}, not SUCCESS",
            clip(&d.result, 200)
        )));
    }
    let kind = match d.action_type.as_str() {
        "PUSH" => ActionKind::Push,
        "DELETE" => ActionKind::Delete,
        other => {
            return Ok(Parsed::Ignored(format!(
                "action-type {:?} is neither PUSH nor DELETE",
                clip(other, 200)
            )))
        }
    };
    let account = event.account.unwrap_or_default();
    let account: AccountId = account.parse().map_err(|_| EventError::Field {
        field: "account",
        reason: format!("must be 12 digits (got {:?})", clip(&account, 200)),
    })?;
    let region = event.region.unwrap_or_default();
    let region: Region = region.parse().map_err(|_| EventError::Field {
        field: "region",
        reason: format!("not an AWS region (got {:?})", clip(&region, 200)),
    })?;
    let repository: RepositoryName = parse_field(&d.repository_name, "detail.repository-name")?;
    let digest: Digest = parse_field(&d.image_digest, "detail.image-digest")?;
    // Only a work item names every tag; ECR's own events name one.
    let tags: Vec<String> = match (from_backfill, d.image_tags) {
        (true, Some(tags)) => tags,
        _ => d.image_tag.filter(|t| !t.is_empty()).into_iter().collect(),
    };
    for t in &tags {
        validate_tag(t).map_err(|e| EventError::Field {
            field: if from_backfill {
                "detail.image-tags"
            } else {
                "detail.image-tag"
            },
            reason: e.to_string(),
        })?;
    }
    Ok(Parsed::Action(ImageAction {
        account,
        region,
        repository,
        digest,
        tags,
        kind,
    }))
}

/// A field parsed into its type; its error, worded by the type, names the field.
fn parse_field<T>(value: &str, field: &'static str) -> Result<T, EventError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| EventError::Field {
        field,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope read as serde would, without the Lambda type.
    fn plain_envelope(payload: &Value) -> Result<Envelope, EventError> {
        let text = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Envelope {
            account: text("account"),
            region: text("region"),
            detail: serde_json::from_value(payload["detail"].clone())
                .map_err(|e| EventError::Shape(e.to_string()))?,
        })
    }

    #[test]
    fn given_an_image_with_tags_when_made_a_work_item_then_it_is_an_ecr_shaped_push_with_every_tag()
    {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let body: serde_json::Value = serde_json::from_str(&work_item(
            "123456789012",
            "eu-west-1",
            "team/app",
            &digest,
            &["v1".into(), "latest".into()],
            None,
        ))
        .unwrap();
        assert_eq!(body["detail-type"], "ECR Image Action");
        assert_eq!(body["source"], BACKFILL_SOURCE);
        assert_eq!(body["account"], "123456789012");
        assert_eq!(body["region"], "eu-west-1");
        assert_eq!(body["detail"]["action-type"], "PUSH");
        assert_eq!(body["detail"]["image-digest"], digest.as_str());
        assert_eq!(body["detail"]["image-tag"], "v1");
        assert_eq!(body["detail"]["image-tags"], json!(["v1", "latest"]));
    }

    #[test]
    fn given_an_untagged_image_when_made_a_work_item_then_no_tag_field() {
        let digest = format!("sha256:{}", "cd".repeat(32));
        let body: serde_json::Value = serde_json::from_str(&work_item(
            "123456789012",
            "us-east-1",
            "a",
            &digest,
            &[],
            None,
        ))
        .unwrap();
        assert!(body["detail"].get("image-tag").is_none());
        assert_eq!(body["detail"]["image-tags"], json!([]));
    }

    #[test]
    fn given_a_work_item_when_parsed_back_then_it_is_the_push_of_every_tag() {
        let digest = format!("sha256:{}", "ef".repeat(32));
        let tags = vec!["v1".to_string(), "latest".to_string()];
        let run = RunId::new();
        let body: Value = serde_json::from_str(&work_item(
            "123456789012",
            "eu-west-1",
            "team/app",
            &digest,
            &tags,
            Some(&run),
        ))
        .unwrap();
        assert_eq!(run_of(&body), Ok(Some(run)));

        let parsed = parse_image_action(&body, plain_envelope).unwrap();

        assert_eq!(
            parsed,
            Parsed::Action(ImageAction {
                account: "123456789012".parse().unwrap(),
                region: "eu-west-1".parse().unwrap(),
                repository: "team/app".parse().unwrap(),
                digest: digest.parse().unwrap(),
                tags,
                kind: ActionKind::Push,
            })
        );
    }
}
