//! What the access-sync tests stand on: the common stage with moto behind
//! the rig's AWS front, which logs every AWS call the function makes and
//! can answer chosen calls with a 5xx ([`stage`]); the users table (and its
//! `NEW_AND_OLD_IMAGES` stream) in moto's default account and the
//! repositories in a second account reached through AssumeRole; a reader
//! of moto's stream API that turns its records into the event Lambda would
//! deliver ([`stream`]); and the tests' own steps and checks ([`steps`]).
#![allow(dead_code)]

pub mod stage;
pub mod steps;
pub mod stream;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

pub use stage::AccessStage;

pub const TABLE: &str = "gen3-pay-models";
/// The account owning the repositories (moto's default account owns the table).
pub const REPOS: &str = "222222222222";
pub const REGION: &str = "us-east-1";
pub const PREFIX: &str = "nextflow-approved";
pub const ROLE: &str = "arn:aws:iam::222222222222:role/ecr-access-sync";

/// Accounts in the `AllowCrossAccountPull` statement of a policy document.
pub fn granted_by(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Sid"] == "AllowCrossAccountPull")
        .flat_map(|s| match &s["Principal"]["AWS"] {
            Value::String(p) => vec![p.clone()],
            Value::Array(ps) => ps
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        })
        .map(|arn| {
            arn.trim_start_matches("arn:aws:iam::")
                .trim_end_matches(":root")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// A row as Gen3's table holds it.
pub fn row(user: &str, ws: &str, account: &str) -> HashMap<String, AttributeValue> {
    row_with(user, ws, Some(s(account)), "Direct Pay")
}

pub fn row_with(
    user: &str,
    ws: &str,
    account: Option<AttributeValue>,
    workspace_type: &str,
) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> = [
        ("user_id".to_string(), s(user)),
        ("bmh_workspace_id".to_string(), s(ws)),
        ("workspace_type".to_string(), s(workspace_type)),
        ("request_status".to_string(), s("active")),
    ]
    .into();
    if let Some(a) = account {
        item.insert("account_id".into(), a);
    }
    item
}

/// `nextflow-approved/<escaped user>`.
pub fn repo(user: &str) -> String {
    format!("{PREFIX}/{}", ecr_bridge::access::escape(user))
}

/// A sample event from `events/`.
pub fn sample(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("json")
}
