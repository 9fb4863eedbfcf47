//! EventBridge `ECR Image Action` events: what to act on, what to ignore,
//! and a specific error for what is malformed.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use ecr_bridge::ids::RepositoryName;
use ecr_bridge::text::{clip, json_kind};
use ecr_bridge_aws::backfill::BackfillRequest;
use ecr_bridge_aws::image_action::ImageAction;
use ecr_bridge_aws::work_queue::{
    self, as_object, Envelope, EventError, ImageActionDetail, ListingStep, Parsed, RunId,
};
use serde_json::Value;

/// What an incoming payload asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Action(ImageAction),
    /// Valid, but not ours to act on (another detail type, a failed push…).
    Ignored(String),
    /// An operator's `{"backfill": {...}}`.
    Backfill(BackfillRequest),
    /// Backfill work items and listing steps delivered by SQS, each judged
    /// on its own.
    Queued(Vec<QueuedItem>),
    /// A backfill listing step (only inside `Queued`).
    Listing(ListingStep),
}

/// One SQS message: its id (to report it failed) and what its body asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedItem {
    pub message_id: String,
    /// The backfill run a work item counts in.
    pub run: Option<RunId>,
    pub body: Result<Incoming, EventError>,
}

/// Any payload the function accepts: an ECR Image Action from EventBridge,
/// a backfill request, or an SQS batch of backfill work items.
pub fn parse(payload: &Value) -> Result<Incoming, EventError> {
    let envelope = as_object(payload)?;
    if let Some(request) = envelope.get("backfill") {
        if envelope.len() > 1 {
            return Err(EventError::Shape(
                "a backfill request has only the \"backfill\" field".into(),
            ));
        }
        let request: BackfillRequest =
            serde_json::from_value(request.clone()).map_err(|e| EventError::Field {
                field: "backfill",
                reason: clip(&e.to_string(), 200),
            })?;
        for (i, repository) in request.repositories.iter().enumerate() {
            repository
                .parse::<RepositoryName>()
                .map_err(|e| EventError::Field {
                    field: "backfill.repositories",
                    reason: format!("[{i}]: {e}"),
                })?;
        }
        return Ok(Incoming::Backfill(request));
    }
    if let Some(records) = envelope.get("Records") {
        return parse_queued(records);
    }
    parse_image_action(payload)
}

/// An SQS event: every record must carry its `messageId` (without it a
/// failure could not be reported); a bad body fails only its own record.
fn parse_queued(records: &Value) -> Result<Incoming, EventError> {
    let records = records.as_array().ok_or_else(|| EventError::Field {
        field: "Records",
        reason: format!("expected an array, got {}", json_kind(records)),
    })?;
    let mut items = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let text = |k: &str| record.get(k).and_then(Value::as_str);
        if text("eventSource") != Some("aws:sqs") {
            return Err(EventError::Field {
                field: "Records[].eventSource",
                reason: format!(
                    "record {i}: expected \"aws:sqs\", got {}",
                    record
                        .get("eventSource")
                        .map(|v| clip(&v.to_string(), 60))
                        .unwrap_or_else(|| "nothing".into())
                ),
            });
        }
        let message_id = text("messageId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| EventError::Field {
                field: "Records[].messageId",
                reason: format!("record {i} has no messageId"),
            })?;
        let body = match text("body") {
            None => Err(EventError::Field {
                field: "Records[].body",
                reason: format!("record {i} has no string body"),
            }),
            Some(body) => serde_json::from_str::<Value>(body).map_err(|e| EventError::Field {
                field: "Records[].body",
                reason: format!("not JSON: {}", clip(&e.to_string(), 200)),
            }),
        };
        let (run, body) = match body {
            Err(e) => (None, Err(e)),
            Ok(v) => match ListingStep::from_body(&v) {
                Some(step) => (None, step.map(Incoming::Listing)),
                None => match work_queue::run_of(&v) {
                    Ok(run) => (run, parse_image_action(&v)),
                    Err(e) => (None, Err(e)),
                },
            },
        };
        items.push(QueuedItem {
            message_id: clip(message_id, 200),
            run,
            body,
        });
    }
    Ok(Incoming::Queued(items))
}

/// An ECR Image Action, from ECR through EventBridge or from a backfill
/// (the format is `ecr_bridge_aws::work_queue`'s).
pub fn parse_image_action(payload: &Value) -> Result<Incoming, EventError> {
    Ok(
        match work_queue::parse_image_action(payload, eventbridge_envelope)? {
            Parsed::Action(action) => Incoming::Action(action),
            Parsed::Ignored(reason) => Incoming::Ignored(reason),
        },
    )
}

/// The EventBridge envelope, read with the path of the offending field:
/// "detail.repository-name: invalid type ...".
fn eventbridge_envelope(payload: &Value) -> Result<Envelope, EventError> {
    let event: EventBridgeEvent<ImageActionDetail> = serde_path_to_error::deserialize(payload)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = clip(&e.into_inner().to_string(), 200);
            if path == "." {
                EventError::Shape(inner)
            } else {
                EventError::Shape(format!("{}: {inner}", clip(&path, 100)))
            }
        })?;
    Ok(Envelope {
        account: event.account,
        region: event.region,
        detail: event.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecr_bridge_aws::image_action::ActionKind;
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
                    (a.repository.as_str(), a.tags.as_slice(), a.kind),
                    ("kuali-coeus", &["2501".to_string()][..], ActionKind::Push)
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
            Incoming::Action(ImageAction { ref tags, .. }) if tags.is_empty()
        ));
    }

    #[test]
    fn given_failures_and_other_detail_types_when_parsed_then_ignored_not_errors() {
        let failed = event(
            json!({"result":"FAILURE","action-type":"PUSH","repository-name":"app","image-digest":DIGEST}),
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
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"app","image-digest":"sha256:xyz"}),
                ),
                "detail.image-digest",
            ),
            (
                event(
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"app","image-digest":DIGEST,"image-tag":"-bad"}),
                ),
                "detail.image-tag",
            ),
            (
                event(
                    json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"app","image-digest":DIGEST,"image-tag":7}),
                ),
                "malformed event",
            ),
        ];
        for (payload, expected) in cases {
            let err = parse(&payload).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let mut bad_account = event(
            json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"app","image-digest":DIGEST}),
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

    #[test]
    fn given_names_and_tags_at_ecr_limits_when_parsed_then_2_to_256_and_300_are_accepted() {
        let push = |repository: &str, tag: &str| {
            parse(&event(json!({
                "result": "SUCCESS", "action-type": "PUSH", "repository-name": repository,
                "image-digest": DIGEST, "image-tag": tag
            })))
        };
        assert!(matches!(push("ab", "v1"), Ok(Incoming::Action(_))));
        assert!(matches!(
            push(&"a".repeat(256), "v1"),
            Ok(Incoming::Action(_))
        ));
        match push("app", &"t".repeat(300)) {
            Ok(Incoming::Action(a)) => assert_eq!(a.tags[0].len(), 300),
            other => panic!("{other:?}"),
        }
        let err = push("a", "v1").unwrap_err().to_string();
        assert!(
            err.contains("detail.repository-name") && err.contains("shorter than 2 characters"),
            "{err}"
        );
        let err = push(&"a".repeat(257), "v1").unwrap_err().to_string();
        assert!(err.contains("longer than 256 characters"), "{err}");
        let err = push("app", &"t".repeat(301)).unwrap_err().to_string();
        assert!(
            err.contains("detail.image-tag") && err.contains("1-300 characters"),
            "{err}"
        );
    }

    #[test]
    fn given_backfill_requests_when_parsed_then_the_request_or_an_error_naming_the_field() {
        assert_eq!(
            parse(&json!({"backfill": {}})).unwrap(),
            Incoming::Backfill(BackfillRequest::default())
        );
        match parse(&json!({"backfill": {"action": "check", "repositories": ["a/b"]}})).unwrap() {
            Incoming::Backfill(r) => assert_eq!(r.repositories, vec!["a/b".to_string()]),
            other => panic!("{other:?}"),
        }
        for (payload, expected) in [
            (json!({"backfill": {"action": "all"}}), "backfill"),
            (json!({"backfill": {"repos": []}}), "repos"),
            (
                json!({"backfill": {"repositories": ["Bad Name"]}}),
                "backfill.repositories",
            ),
            (json!({"backfill": [1]}), "backfill"),
            (
                json!({"backfill": {}, "detail": {}}),
                "only the \"backfill\" field",
            ),
        ] {
            let err = parse(&payload).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    fn sqs(records: Value) -> Value {
        json!({ "Records": records })
    }

    fn work_item(tags: &[&str]) -> String {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        ecr_bridge_aws::work_queue::work_item(
            "123456789012",
            "us-east-1",
            "team/app",
            DIGEST,
            &tags,
            None,
        )
    }

    #[test]
    fn given_an_sqs_batch_of_work_items_when_parsed_then_each_record_is_judged_on_its_own() {
        let batch = sqs(json!([
            {"messageId": "m1", "eventSource": "aws:sqs", "body": work_item(&["v1", "latest"])},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": "not json"},
            {"messageId": "m3", "eventSource": "aws:sqs", "body": work_item(&["-bad"])},
            {"messageId": "m4", "eventSource": "aws:sqs"},
        ]));
        let Incoming::Queued(items) = parse(&batch).unwrap() else {
            panic!("expected a queued batch")
        };
        let ids: Vec<&str> = items.iter().map(|i| i.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m3", "m4"]);
        match &items[0].body {
            Ok(Incoming::Action(a)) => {
                assert_eq!(a.tags, vec!["v1".to_string(), "latest".to_string()]);
                assert_eq!(a.repository, "team/app");
                assert_eq!(a.kind, ActionKind::Push);
            }
            other => panic!("{other:?}"),
        }
        let err = |i: usize| items[i].body.clone().unwrap_err().to_string();
        assert!(err(1).contains("not JSON"), "{}", err(1));
        assert!(err(2).contains("detail.image-tags"), "{}", err(2));
        assert!(err(3).contains("no string body"), "{}", err(3));
    }

    #[test]
    fn given_a_batch_with_a_listing_step_and_a_run_s_work_item_when_parsed_then_each_is_told_apart()
    {
        use ecr_bridge_aws::work_queue::Listing;
        let run = RunId::new();
        let step = ListingStep {
            run: run.clone(),
            listing: Listing::Repositories {
                source: None,
                next_token: None,
            },
        };
        let item = ecr_bridge_aws::work_queue::work_item(
            "123456789012",
            "us-east-1",
            "team/app",
            DIGEST,
            &["v1".to_string()],
            Some(&run),
        );
        let bad_run = item.replace(run.as_str(), "not-a-run");
        let batch = sqs(json!([
            {"messageId": "s", "eventSource": "aws:sqs", "body": step.to_body()},
            {"messageId": "w", "eventSource": "aws:sqs", "body": item},
            {"messageId": "b", "eventSource": "aws:sqs", "body": bad_run},
        ]));
        let Incoming::Queued(items) = parse(&batch).unwrap() else {
            panic!("expected a queued batch")
        };
        assert_eq!(items[0].body, Ok(Incoming::Listing(step)));
        assert_eq!(items[0].run, None);
        assert!(matches!(items[1].body, Ok(Incoming::Action(_))));
        assert_eq!(items[1].run, Some(run));
        let err = items[2].body.clone().unwrap_err().to_string();
        assert!(err.contains("detail.backfill-run"), "{err}");
    }

    #[test]
    fn given_sqs_batches_that_cannot_be_answered_per_record_when_parsed_then_the_whole_batch_is_refused(
    ) {
        for (payload, expected) in [
            (sqs(json!("x")), "Records"),
            (
                sqs(json!([{"eventSource": "aws:sqs", "body": "{}"}])),
                "messageId",
            ),
            (
                sqs(json!([{"messageId": "m", "eventSource": "aws:dynamodb"}])),
                "aws:sqs",
            ),
        ] {
            let err = parse(&payload).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn given_image_tags_on_an_event_from_ecr_when_parsed_then_only_image_tag_counts() {
        let mut e = event(
            json!({"result":"SUCCESS","action-type":"PUSH","repository-name":"app","image-digest":DIGEST,"image-tag":"v1","image-tags":["v1","extra"]}),
        );
        assert!(
            matches!(parse(&e).unwrap(), Incoming::Action(ImageAction { ref tags, .. }) if tags == &["v1".to_string()])
        );
        e["source"] = json!("someone.else");
        assert!(matches!(parse(&e).unwrap(), Incoming::Ignored(_)));
    }
}
