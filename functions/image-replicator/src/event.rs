//! EventBridge `ECR Image Action` events: what to act on, what to ignore,
//! and a specific error for what is malformed.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use ecr_bridge::reference::{validate_repository, validate_tag};
use ecr_bridge::text::{clip, json_kind};
use ecr_bridge::Digest;
use ecr_bridge_aws::replicator::{ActionKind, ImageAction};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    #[serde(default)]
    pub manifest_media_type: Option<String>,
    #[serde(default)]
    pub artifact_media_type: Option<String>,
}

/// What an incoming payload asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
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

pub const DETAIL_TYPE: &str = "ECR Image Action";

pub fn parse(payload: &Value) -> Result<Incoming, EventError> {
    let envelope = payload.as_object().ok_or_else(|| {
        EventError::Shape(format!(
            "expected a JSON object, got {}",
            json_kind(payload)
        ))
    })?;
    let text = |k: &str| envelope.get(k).and_then(Value::as_str);
    match (text("source"), text("detail-type")) {
        (Some("aws.ecr"), Some(DETAIL_TYPE)) => {}
        (Some(source), Some(detail_type)) => {
            return Ok(Incoming::Ignored(format!(
                "{source} / {detail_type} is not an ECR Image Action"
            )))
        }
        _ => {
            return Err(EventError::Shape(
                "missing string fields \"source\" and \"detail-type\"".into(),
            ))
        }
    }
    let event: EventBridgeEvent<ImageActionDetail> = serde_json::from_value(payload.clone())
        .map_err(|e| EventError::Shape(clip(&e.to_string(), 200)))?;
    let d = event.detail;
    if d.result != "SUCCESS" {
        return Ok(Incoming::Ignored(format!(
            "result is {:?}, not SUCCESS",
            clip(&d.result, 200)
        )));
    }
    let kind = match d.action_type.as_str() {
        "PUSH" => ActionKind::Push,
        "DELETE" => ActionKind::Delete,
        other => {
            return Ok(Incoming::Ignored(format!(
                "action-type {:?} is neither PUSH nor DELETE",
                clip(other, 200)
            )))
        }
    };
    let account = event.account.unwrap_or_default();
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EventError::Field {
            field: "account",
            reason: format!("must be 12 digits (got {:?})", clip(&account, 200)),
        });
    }
    let region = event.region.unwrap_or_default();
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(EventError::Field {
            field: "region",
            reason: format!("not an AWS region (got {:?})", clip(&region, 200)),
        });
    }
    validate_repository(&d.repository_name).map_err(|e| EventError::Field {
        field: "detail.repository-name",
        reason: e.to_string(),
    })?;
    let digest: Digest =
        d.image_digest
            .parse()
            .map_err(
                |e: ecr_bridge::digest::DigestParseError| EventError::Field {
                    field: "detail.image-digest",
                    reason: e.to_string(),
                },
            )?;
    let tag = match d.image_tag.filter(|t| !t.is_empty()) {
        Some(t) => {
            validate_tag(&t).map_err(|e| EventError::Field {
                field: "detail.image-tag",
                reason: e.to_string(),
            })?;
            Some(t)
        }
        None => None,
    };
    Ok(Incoming::Action(ImageAction {
        account,
        region,
        repository: d.repository_name,
        digest,
        tag,
        kind,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIGEST: &str = "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn event(detail: Value) -> Value {
        json!({
            "version": "0", "id": "e1", "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        })
    }

    #[test]
    fn given_a_tagged_push_when_parsed_then_an_action_with_tag() {
        let e = event(
            json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"kuali-coeus","image-digest":DIGEST,"image-tag":"2501"}),
        );
        match parse(&e).unwrap() {
            Incoming::Action(a) => {
                assert_eq!(
                    (a.repository.as_str(), a.tag.as_deref(), a.kind),
                    ("kuali-coeus", Some("2501"), ActionKind::Push)
                );
                assert_eq!(a.account, "123456789012");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_a_push_by_digest_when_parsed_then_no_tag() {
        let e = event(
            json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"a/b","image-digest":DIGEST}),
        );
        assert!(matches!(
            parse(&e).unwrap(),
            Incoming::Action(ImageAction { tag: None, .. })
        ));
    }

    #[test]
    fn given_failures_and_other_detail_types_when_parsed_then_ignored_not_errors() {
        let failed = event(
            json!({"result":"FAILURE","action-type":"PUSH","repository-name":"a","image-digest":DIGEST}),
        );
        assert!(matches!(parse(&failed).unwrap(), Incoming::Ignored(_)));
        let mut scan = event(json!({"scan-status":"COMPLETE"}));
        scan["detail-type"] = json!("ECR Image Scan");
        assert!(matches!(parse(&scan).unwrap(), Incoming::Ignored(_)));
        let other = json!({"source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","detail":{}});
        assert!(matches!(parse(&other).unwrap(), Incoming::Ignored(_)));
    }

    #[test]
    fn given_malformed_events_when_parsed_then_specific_errors_naming_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!("just a string"), "expected a JSON object"),
            (json!({"detail": {}}), "missing string fields"),
            (event(json!({"result":"SUCCESS"})), "malformed event"),
            (
                event(
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"Bad Name","image-digest":DIGEST}),
                ),
                "detail.repository-name",
            ),
            (
                event(
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"a","image-digest":"sha256:xyz"}),
                ),
                "detail.image-digest",
            ),
            (
                event(
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"a","image-digest":DIGEST,"image-tag":"-bad"}),
                ),
                "detail.image-tag",
            ),
            (
                event(
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"a","image-digest":DIGEST,"image-tag":7}),
                ),
                "malformed event",
            ),
        ];
        for (payload, expected) in cases {
            let err = parse(&payload).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let mut bad_account = event(
            json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"a","image-digest":DIGEST}),
        );
        bad_account["account"] = json!("12345");
        assert!(parse(&bad_account)
            .unwrap_err()
            .to_string()
            .contains("account"));
        let mut huge = event(
            json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"a".repeat(100_000),"image-digest":DIGEST}),
        );
        let err = parse(&huge).unwrap_err().to_string();
        assert!(err.len() < 1000, "errors stay short even for huge input");
        huge["region"] = json!(null);
        assert!(parse(&huge).is_err());
    }
}
