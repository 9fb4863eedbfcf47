//! Scenarios for the config as a whole, by topic (`tests/*.rs`), and the
//! helpers they share.

use serde_json::{json, Value};

use super::*;

const A: &str = "222222222222";
const B: &str = "333333333333";

fn load(doc: Value) -> MappingConfig {
    MappingConfig::from_json(&doc.to_string()).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn refuse(doc: Value) -> ConfigError {
    match MappingConfig::from_json(&doc.to_string()) {
        Ok(_) => panic!("config accepted: {doc}"),
        Err(e) => e,
    }
}

/// A document of one rule, `matcher` to one destination named `repository`,
/// refused with `text` at `path`.
fn assert_rule_refused(matcher: Value, repository: &str, path: &str, text: &str) {
    assert_refused(
        json!({ "rules": [ { "match": matcher, "destinations": [dest(repository)] } ] }),
        path,
        text,
    );
}

/// A refused config, checked to have a problem at `path` whose message
/// contains `text`. A failure shows the document, so that a case in a table
/// of them is named.
fn assert_refused(doc: Value, path: &str, text: &str) -> ConfigError {
    let shown = doc.to_string();
    let err = refuse(doc);
    let message = err.to_string();
    let expected = format!("{path}: ");
    assert!(
        err.problems()
            .iter()
            .any(|p| p.path == path && p.to_string().contains(text)),
        "expected a problem at {expected:?} containing {text:?} in {shown}, got: {message}"
    );
    err
}

fn dest(repository: &str) -> Value {
    json!({ "account": A, "region": "us-east-1", "repository": repository })
}

/// Rendered names of a decision that must replicate.
fn targets(decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Replicate(r) => r
            .destinations
            .iter()
            .map(|t| t.repository.clone().unwrap_or_else(|e| panic!("{e}")))
            .collect(),
        other => panic!("expected Replicate, got {other:?}"),
    }
}

fn rule_of(decision: &Decision) -> &str {
    match decision {
        Decision::Replicate(r) => &r.rule,
        Decision::TagFiltered { rule, .. } => rule,
        Decision::NoMatchingRule => panic!("no rule matched"),
    }
}

fn brief_example() -> Value {
    json!({
      "version": 1,
      "rules": [
        {
          "name": "kuali",
          "match": { "exact": "kuali-coeus" },
          "destinations": [
            { "account": A, "region": "us-east-1",
              "role_arn": "arn:aws:iam::222222222222:role/ecr-bridge-push",
              "external_id": "kuali-sync", "repository": "coeus" }
          ],
          "tags": { "include": ["v*", "release-*"], "exclude": ["*-dirty"], "untagged": true },
          "create_repository": { "tag_mutability": "IMMUTABLE", "scan_on_push": true,
                                  "encryption": { "type": "KMS", "kms_key": "arn:aws:kms:us-east-1:222222222222:key/abc" } },
          "propagate_deletes": false,
          "copy_referrers": false
        },
        { "match": { "prefix": "kuali-" }, "destinations": [ { "account": A, "region": "us-east-1", "repository": "{suffix}" } ] },
        { "match": { "regex": "^team-(?P<team>[a-z0-9]+)/(.+)$" }, "destinations": [ { "account": B, "region": "eu-west-1", "repository": "mirror/{team}/{2}" } ] }
      ]
    })
}

mod confine;
mod creation;
mod defaults;
mod explain;
mod image;
mod invalid;
mod kuali;
mod limits;
mod loops;
mod many_problems;
mod matching;
mod rendering;
mod sources;
mod tags;
