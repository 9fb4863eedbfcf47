//! What an invocation asks for: a DynamoDB Streams batch, a scheduled full
//! reconcile, a hand-made `{"reconcile": …}`, or steps of a fanned-out full
//! reconcile from the reconcile queue (an SQS batch). A stream record is read on
//! its own, so a malformed one gets a specific error and the rest of the
//! batch goes on.

use ecr_bridge::text::{clip, json_kind};
use ecr_bridge_aws::access_sync::step::ReconcileStep;
use ecr_bridge_aws::access_sync::StreamChange;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Stream {
        changes: Vec<StreamChange>,
        malformed: Vec<MalformedRecord>,
        /// Records deleted by TTL (kept in `changes`; counted for the logs).
        ttl_deletions: usize,
    },
    /// Every user and every repository under the prefix.
    FullReconcile,
    /// Only these users (`{"reconcile": {"users": [...]}}`).
    Users(Vec<String>),
    /// Steps of a fanned-out full reconcile, from the reconcile queue.
    Steps(Vec<QueuedStep>),
}

/// One message of the reconcile queue: its id (what a batch failure names)
/// and its step, or why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedStep {
    pub message_id: String,
    pub step: Result<ReconcileStep, String>,
}

/// A stream record that names no user: logged and counted, never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRecord {
    /// Position in `Records`.
    pub index: usize,
    pub sequence_number: Option<String>,
    pub error: RecordError,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is {0}, not an object")]
    NotAnObject(&'static str),
    #[error("eventSource is {0:?}, not aws:dynamodb")]
    NotDynamoDb(String),
    #[error("the record has no \"dynamodb\" object")]
    NoStreamRecord,
    #[error("no {attribute:?} in dynamodb.Keys, NewImage or OldImage")]
    NoUserId { attribute: String },
    #[error("{attribute:?} is {found}; expected a non-empty string (S)")]
    UserIdNotString { attribute: String, found: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed event: {0}")]
    Shape(String),
    #[error("unrecognised event: {0}; expected a DynamoDB Streams batch, an EventBridge scheduled event or {{\"reconcile\": {{}}}}")]
    Unrecognised(String),
    #[error("invalid reconcile request: {0}")]
    Reconcile(String),
}

pub fn parse(payload: &Value, user_attribute: &str) -> Result<Invocation, EventError> {
    let envelope = payload.as_object().ok_or_else(|| {
        EventError::Shape(format!(
            "expected a JSON object, got {}",
            json_kind(payload)
        ))
    })?;
    if let Some(records) = envelope.get("Records") {
        let records = records.as_array().ok_or_else(|| {
            EventError::Shape(format!(
                "\"Records\" is {}, not an array",
                json_kind(records)
            ))
        })?;
        let from_sqs = records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs");
        if from_sqs {
            return Ok(Invocation::Steps(records.iter().map(queued_step).collect()));
        }
        return Ok(stream(records, user_attribute));
    }
    if let Some(request) = envelope.get("reconcile") {
        return reconcile_request(request);
    }
    let text = |k: &str| envelope.get(k).and_then(Value::as_str);
    match (text("source"), text("detail-type")) {
        (Some("aws.events"), Some("Scheduled Event")) => Ok(Invocation::FullReconcile),
        (Some(source), Some(detail_type)) => Err(EventError::Unrecognised(format!(
            "{} / {}",
            clip(source, 200),
            clip(detail_type, 200)
        ))),
        _ => Err(EventError::Unrecognised(format!(
            "an object with keys {}",
            clip(
                &envelope.keys().cloned().collect::<Vec<_>>().join(", "),
                200
            )
        ))),
    }
}

fn queued_step(record: &Value) -> QueuedStep {
    let message_id = record
        .get("messageId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let step = match record.get("body").and_then(Value::as_str) {
        None => Err("the message has no string \"body\"".to_string()),
        Some(body) => serde_json::from_str::<Value>(body)
            .map_err(|e| format!("the body is not JSON: {e}"))
            .and_then(|v| ReconcileStep::parse(&v)),
    };
    QueuedStep { message_id, step }
}

fn stream(records: &[Value], user_attribute: &str) -> Invocation {
    let mut changes = Vec::with_capacity(records.len());
    let mut malformed = Vec::new();
    let mut ttl_deletions = 0;
    for (index, record) in records.iter().enumerate() {
        let sequence_number = record
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        match user_of(record, user_attribute) {
            Ok(user_id) => {
                if record
                    .pointer("/userIdentity/principalId")
                    .and_then(Value::as_str)
                    == Some("dynamodb.amazonaws.com")
                {
                    ttl_deletions += 1;
                }
                changes.push(StreamChange {
                    user_id,
                    sequence_number,
                });
            }
            Err(error) => malformed.push(MalformedRecord {
                index,
                sequence_number,
                error,
            }),
        }
    }
    Invocation::Stream {
        changes,
        malformed,
        ttl_deletions,
    }
}

/// The user whose rows changed: from the keys, else from either image.
fn user_of(record: &Value, attribute: &str) -> Result<String, RecordError> {
    let record = record
        .as_object()
        .ok_or(RecordError::NotAnObject(json_kind(record)))?;
    if let Some(source) = record.get("eventSource").and_then(Value::as_str) {
        if source != "aws:dynamodb" {
            return Err(RecordError::NotDynamoDb(clip(source, 200)));
        }
    }
    let stream_record = record
        .get("dynamodb")
        .and_then(Value::as_object)
        .ok_or(RecordError::NoStreamRecord)?;
    let value = ["Keys", "NewImage", "OldImage"]
        .iter()
        .filter_map(|part| stream_record.get(*part).and_then(Value::as_object))
        .find_map(|item| item.get(attribute))
        .ok_or_else(|| RecordError::NoUserId {
            attribute: clip(attribute, 200),
        })?;
    match value.as_object().map(single_entry) {
        Some(Some(("S", Value::String(s)))) if !s.is_empty() => Ok(s.clone()),
        Some(Some(("S", Value::String(_)))) => Err(RecordError::UserIdNotString {
            attribute: clip(attribute, 200),
            found: "an empty string".into(),
        }),
        Some(Some(("S", other))) => Err(RecordError::UserIdNotString {
            attribute: clip(attribute, 200),
            found: format!("an \"S\" value that is {}", json_kind(other)),
        }),
        Some(Some((t, _))) => Err(RecordError::UserIdNotString {
            attribute: clip(attribute, 200),
            found: format!("a DynamoDB {} value", clip(t, 200)),
        }),
        _ => Err(RecordError::UserIdNotString {
            attribute: clip(attribute, 200),
            found: format!(
                "{} rather than a DynamoDB attribute value",
                json_kind(value)
            ),
        }),
    }
}

fn single_entry(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    let mut it = map.iter();
    match (it.next(), it.next()) {
        (Some((k, v)), None) => Some((k.as_str(), v)),
        _ => None,
    }
}

fn reconcile_request(request: &Value) -> Result<Invocation, EventError> {
    let options = match request {
        Value::Null | Value::Bool(true) => return Ok(Invocation::FullReconcile),
        Value::Object(o) => o,
        other => {
            return Err(EventError::Reconcile(format!(
                "\"reconcile\" is {}; expected an object such as {{}} or {{\"users\": [...]}}",
                json_kind(other)
            )))
        }
    };
    if let Some(unknown) = options.keys().find(|k| k.as_str() != "users") {
        return Err(EventError::Reconcile(format!(
            "unknown option {:?} (the only option is \"users\")",
            clip(unknown, 200)
        )));
    }
    match options.get("users") {
        None => Ok(Invocation::FullReconcile),
        Some(Value::Array(items)) => {
            let users: Option<Vec<String>> = items
                .iter()
                .map(|u| u.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                .collect();
            match users {
                Some(users) if !users.is_empty() => Ok(Invocation::Users(users)),
                _ => Err(EventError::Reconcile(
                    "\"users\" must be a non-empty list of non-empty strings".into(),
                )),
            }
        }
        Some(other) => Err(EventError::Reconcile(format!(
            "\"users\" is {}, not a list",
            json_kind(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("json")
    }

    fn changes(inv: Invocation) -> (Vec<StreamChange>, Vec<MalformedRecord>) {
        match inv {
            Invocation::Stream {
                changes, malformed, ..
            } => (changes, malformed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_the_sample_stream_events_when_parsed_then_they_are_lambdas_typed_shape_too() {
        for name in [
            "dynamodb-insert.json",
            "dynamodb-modify.json",
            "dynamodb-remove.json",
            "dynamodb-batch-mixed.json",
        ] {
            let e = sample(name);
            let typed: Result<aws_lambda_events::event::dynamodb::Event, _> =
                serde_json::from_value(e.clone());
            assert!(typed.is_ok(), "{name}: {typed:?}");
            assert!(
                matches!(parse(&e, "user_id"), Ok(Invocation::Stream { .. })),
                "{name}"
            );
        }
        let scheduled = sample("scheduled-reconcile.json");
        assert!(
            serde_json::from_value::<aws_lambda_events::event::eventbridge::EventBridgeEvent>(
                scheduled.clone()
            )
            .is_ok()
        );
        assert_eq!(parse(&scheduled, "user_id"), Ok(Invocation::FullReconcile));
    }

    #[test]
    fn given_insert_modify_and_remove_when_parsed_then_each_names_its_user_and_sequence_number() {
        for name in [
            "dynamodb-insert.json",
            "dynamodb-modify.json",
            "dynamodb-remove.json",
        ] {
            let (c, m) = changes(parse(&sample(name), "user_id").unwrap());
            assert!(m.is_empty(), "{name}: {m:?}");
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].user_id, "user1@username.com", "{name}");
            assert!(c[0]
                .sequence_number
                .as_deref()
                .is_some_and(|s| !s.is_empty()));
        }
    }

    #[test]
    fn given_the_mixed_batch_when_parsed_then_good_records_go_on_and_bad_ones_say_why() {
        let (c, m) = changes(parse(&sample("dynamodb-batch-mixed.json"), "user_id").unwrap());
        let users: Vec<&str> = c.iter().map(|c| c.user_id.as_str()).collect();
        assert_eq!(
            users,
            [
                "user1@username.com",
                "first_last@uchicago.edu",
                "User@x.org",
                "user1@username.com",
                "jane-doe@x.io"
            ]
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(matches!(m[0].error, RecordError::NoUserId { .. }), "{m:?}");
        assert!(
            matches!(m[1].error, RecordError::UserIdNotString { .. }),
            "{m:?}"
        );
        assert!(m.iter().all(|r| r.sequence_number.is_some()));
    }

    #[test]
    fn given_records_of_every_bad_shape_when_parsed_then_specific_errors_and_no_panic() {
        let records = json!({"Records": [
            7,
            {"eventSource": "aws:kinesis", "dynamodb": {}},
            {"eventName": "INSERT"},
            {"dynamodb": {"Keys": {"user_id": {"S": ""}}}},
            {"dynamodb": {"Keys": {"user_id": "plain"}}},
            {"dynamodb": {"Keys": {"user_id": {"S": "a", "N": "1"}}}},
            {"dynamodb": {"Keys": {"bmh_workspace_id": {"S": "w"}}, "OldImage": {"user_id": {"S": "from-old"}}}},
            {"dynamodb": {"Keys": {"user_id": {"S": "ttl"}}, "SequenceNumber": "5"}, "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}
        ]});
        let Invocation::Stream {
            changes,
            malformed,
            ttl_deletions,
        } = parse(&records, "user_id").unwrap()
        else {
            panic!()
        };
        let errors: Vec<String> = malformed.iter().map(|m| m.error.to_string()).collect();
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].contains("a number"));
        assert!(errors[1].contains("aws:kinesis"));
        assert!(errors[2].contains("no \"dynamodb\""));
        assert!(errors[3].contains("empty string"));
        assert!(errors[4].contains("a string rather than"));
        assert!(errors[5].contains("an object rather than"));
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].user_id, "from-old");
        assert_eq!(changes[1].sequence_number.as_deref(), Some("5"));
        assert_eq!(ttl_deletions, 1);
    }

    #[test]
    fn given_an_s_attribute_that_is_not_a_string_when_parsed_then_the_error_says_what_it_is() {
        let records = json!({"Records": [
            {"dynamodb": {"Keys": {"user_id": {"S": 5}}}},
            {"dynamodb": {"Keys": {"user_id": {"S": null}}}},
            {"dynamodb": {"Keys": {"user_id": {"S": ""}}}}
        ]});
        let (c, m) = changes(parse(&records, "user_id").unwrap());
        assert!(c.is_empty());
        let errors: Vec<String> = m.iter().map(|m| m.error.to_string()).collect();
        assert!(
            errors[0].contains("an \"S\" value that is a number"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("an \"S\" value that is null"),
            "{errors:?}"
        );
        assert!(errors[2].contains("an empty string"), "{errors:?}");
    }

    #[test]
    fn given_a_reconcile_queue_batch_when_parsed_then_each_message_is_a_step_or_says_why_not() {
        let step = ecr_bridge_aws::access_sync::step::ReconcileStep::new(
            &Default::default(),
            ecr_bridge_aws::access_sync::step::StepWork::Sweep {
                next_token: None,
                done_through: None,
            },
        );
        let event = json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": step.body()},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": "{\"backfill_step\": {}}"},
            {"eventSource": "aws:sqs", "messageId": "m3", "body": "not json"},
        ]});
        let Ok(Invocation::Steps(steps)) = parse(&event, "user_id") else {
            panic!("steps")
        };
        assert_eq!(steps[0].message_id, "m1");
        assert_eq!(steps[0].step.as_ref(), Ok(&step));
        assert!(steps[1]
            .step
            .as_ref()
            .unwrap_err()
            .contains("no \"reconcile_step\""));
        assert!(steps[2].step.as_ref().unwrap_err().contains("not JSON"));
    }

    #[test]
    fn given_reconcile_payloads_when_parsed_then_full_or_by_user_or_a_specific_error() {
        assert_eq!(
            parse(&json!({"reconcile": {}}), "u"),
            Ok(Invocation::FullReconcile)
        );
        assert_eq!(
            parse(&json!({"reconcile": null}), "u"),
            Ok(Invocation::FullReconcile)
        );
        assert_eq!(
            parse(&json!({"reconcile": {"users": ["a@x.io"]}}), "u"),
            Ok(Invocation::Users(vec!["a@x.io".into()]))
        );
        for bad in [
            json!({"reconcile": 3}),
            json!({"reconcile": {"dry_run": true}}),
            json!({"reconcile": {"users": []}}),
            json!({"reconcile": {"users": [1]}}),
            json!({"reconcile": {"users": "a"}}),
        ] {
            assert!(
                matches!(parse(&bad, "u"), Err(EventError::Reconcile(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn given_other_payloads_when_parsed_then_unrecognised_or_malformed_never_a_panic() {
        for (payload, expected) in [
            (json!("x"), "expected a JSON object"),
            (json!({"Records": {}}), "not an array"),
            (
                json!({"source": "aws.ecr", "detail-type": "ECR Image Action"}),
                "aws.ecr / ECR Image Action",
            ),
            (json!({"hello": 1}), "keys hello"),
        ] {
            let e = parse(&payload, "user_id").unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
        let huge = json!({"source": "x".repeat(100_000), "detail-type": "y"});
        assert!(parse(&huge, "user_id").unwrap_err().to_string().len() < 1000);
    }
}
