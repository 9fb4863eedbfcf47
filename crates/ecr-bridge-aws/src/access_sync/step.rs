//! The full reconcile's steps as messages on the reconcile queue: one Scan
//! segment from where it stopped, or one page range of the orphan sweep.
//! A step works until its invocation nears its deadline and then enqueues
//! its own continuation, so no reconcile is bound by one invocation.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body's only field: a reconcile step is told from anything else by it.
pub const RECONCILE_STEP_FIELD: &str = "reconcile_step";

crate::hex_id::hex_id!(
    /// A reconcile run's id (`rc-` and hex): what its steps carry, so a
    /// step of a replaced run stops instead of counting into the new one.
    ReconcileRunId,
    "rc-",
    "a reconcile run id"
);

crate::hex_id::hex_id!(
    /// One step's id (`st-` and hex): a redelivered message carries the
    /// same one, so the step runs once (see `ReconcileRuns::claim`).
    StepId,
    "st-",
    "a reconcile step id"
);

/// One value of a table key (DynamoDB keys are strings, numbers or
/// binary), as DynamoDB's own JSON writes it: `{"S": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum KeyValue {
    S(String),
    N(String),
    /// Base64, as in DynamoDB JSON.
    B(String),
}

/// Where a Scan goes on (`ExclusiveStartKey`), carried in a message.
pub type StartKey = BTreeMap<String, KeyValue>;

/// The key DynamoDB returned, for a message; `None` if an attribute is not
/// of a key type (DynamoDB never returns one).
pub fn start_key_of(key: &HashMap<String, AttributeValue>) -> Option<StartKey> {
    key.iter()
        .map(|(name, v)| {
            let value = match v {
                AttributeValue::S(s) => KeyValue::S(s.clone()),
                AttributeValue::N(n) => KeyValue::N(n.clone()),
                AttributeValue::B(b) => {
                    KeyValue::B(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
                }
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// The key to hand back to DynamoDB; `None` for binary that is not base64.
pub fn exclusive_start_key(key: &StartKey) -> Option<HashMap<String, AttributeValue>> {
    key.iter()
        .map(|(name, v)| {
            let value = match v {
                KeyValue::S(s) => AttributeValue::S(s.clone()),
                KeyValue::N(n) => AttributeValue::N(n.clone()),
                KeyValue::B(b) => AttributeValue::B(Blob::new(
                    base64::engine::general_purpose::STANDARD.decode(b).ok()?,
                )),
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// One step of a full reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileStep {
    pub run: ReconcileRunId,
    pub id: StepId,
    #[serde(flatten)]
    pub work: StepWork,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepWork {
    /// Scan segment `index` of `total` from `start`: every user found whose
    /// rows grant something is converged.
    Segment {
        index: u32,
        total: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<StartKey>,
        /// The user the previous page ended in: converged from a Query
        /// already, so their rows at the start of this page are skipped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skip_user: Option<String>,
        /// The page from `start` was cut short by the deadline: its users up
        /// to this one are done (if the page no longer holds this user, the
        /// whole page is done again: converging is idempotent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        done_through: Option<String>,
    },
    /// Every repository under the prefix, from `next_token`: each whose
    /// users' rows (read again, consistently) grant nothing is revoked.
    Sweep {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
        /// As for a segment: the page's repositories up to this one are done.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        done_through: Option<String>,
    },
}

impl ReconcileStep {
    /// A new step of `run`, with an id of its own.
    pub fn new(run: &ReconcileRunId, work: StepWork) -> ReconcileStep {
        ReconcileStep {
            run: run.clone(),
            id: StepId::new(),
            work,
        }
    }

    /// The message body: `{"reconcile_step": {...}}`.
    pub fn body(&self) -> String {
        serde_json::json!({ RECONCILE_STEP_FIELD: self }).to_string()
    }

    /// A message body read back; the error says what is wrong with it.
    pub fn parse(body: &Value) -> Result<ReconcileStep, String> {
        let step = body
            .get(RECONCILE_STEP_FIELD)
            .ok_or_else(|| format!("no {RECONCILE_STEP_FIELD:?} field"))?;
        let step: ReconcileStep = serde_json::from_value(step.clone())
            .map_err(|e| format!("invalid {RECONCILE_STEP_FIELD}: {e}"))?;
        if let StepWork::Segment { index, total, .. } = &step.work {
            if *total == 0 || index >= total {
                return Err(format!(
                    "invalid {RECONCILE_STEP_FIELD}: segment {index} of {total}"
                ));
            }
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_a_segment_continuation_when_written_and_read_then_it_is_the_same_step() {
        let key: HashMap<String, AttributeValue> = [
            ("user_id".to_string(), AttributeValue::S("a@x.io".into())),
            ("n".to_string(), AttributeValue::N("7".into())),
            ("b".to_string(), AttributeValue::B(Blob::new(vec![0, 255]))),
        ]
        .into();
        let step = ReconcileStep {
            run: ReconcileRunId::new(),
            id: StepId::new(),
            work: StepWork::Segment {
                index: 2,
                total: 4,
                start: start_key_of(&key),
                skip_user: Some("a@x.io".into()),
                done_through: Some("b@x.io".into()),
            },
        };
        let body: Value = serde_json::from_str(&step.body()).unwrap();
        let back = ReconcileStep::parse(&body).unwrap();
        assert_eq!(back, step);
        let StepWork::Segment { start, .. } = back.work else {
            panic!("a segment")
        };
        assert_eq!(exclusive_start_key(&start.unwrap()).unwrap(), key);
    }

    #[test]
    fn given_bad_bodies_when_parsed_then_each_error_names_the_problem() {
        let run = ReconcileRunId::new().to_string();
        let cases = [
            (json!({}), "no \"reconcile_step\""),
            (
                json!({"reconcile_step": {"run": "bf-12", "id": "st-1", "sweep": {}}}),
                "\"rc-\"",
            ),
            (
                json!({"reconcile_step": {"run": run, "id": "st-1", "segment": {"index": 4, "total": 4}}}),
                "segment 4 of 4",
            ),
            (
                json!({"reconcile_step": {"run": run, "id": "st-1", "segment": {"index": 0, "total": 1, "start": {"k": {"M": {}}}}}}),
                "invalid reconcile_step",
            ),
            (
                json!({"reconcile_step": {"run": run, "id": "st-1", "sweep": {}, "x": 1}}),
                "invalid",
            ),
            (
                json!({"reconcile_step": {"run": run, "id": "x y", "sweep": {}}}),
                "hex digits",
            ),
        ];
        for (body, expected) in cases {
            let e = ReconcileStep::parse(&body).unwrap_err();
            assert!(e.contains(expected), "{body}: {e}");
        }
        let key: StartKey = [("b".to_string(), KeyValue::B("not base64!".into()))].into();
        assert_eq!(exclusive_start_key(&key), None);
    }
}
