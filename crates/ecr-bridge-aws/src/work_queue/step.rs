//! The listing step's format: one page range of a backfill's listing, as
//! a message on the work queue. A step lists from `next_token` until its
//! invocation nears its deadline and then enqueues its own continuation,
//! so no listing is bound by one invocation.

use ecr_bridge::ids::{AccountId, Region, RepositoryName};
use ecr_bridge::text::clip;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::EventError;

/// The body's only field: a step is told from a work item by it.
pub const STEP_FIELD: &str = "backfill_step";

crate::hex_id::hex_id!(
    /// A run id: what work items and listing steps carry (`bf-` and hex).
    RunId,
    "bf-",
    "a backfill run id"
);

/// Which of the mapping's `sources` a step lists; absent: the function's
/// own region through its source role (a mapping without `sources`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceKey {
    pub account: AccountId,
    pub region: Region,
}

/// What a step lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "list", rename_all = "snake_case", deny_unknown_fields)]
pub enum Listing {
    /// The source registry's repositories (DescribeRepositories): each one
    /// the mapping routes gets an `Images` step.
    Repositories {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<SourceKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
    },
    /// One repository's images (DescribeImages): each one that replicates
    /// gets a work item.
    Images {
        account: AccountId,
        repository: RepositoryName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<SourceKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
    },
}

/// One listing step of run `run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingStep {
    pub run: RunId,
    pub listing: Listing,
}

impl ListingStep {
    pub fn to_body(&self) -> String {
        json!({ STEP_FIELD: self }).to_string()
    }

    /// The step in a message body, `None` when the body is not a step.
    pub fn from_body(body: &Value) -> Option<Result<ListingStep, EventError>> {
        let step = body.as_object()?.get(STEP_FIELD)?;
        Some(
            serde_json::from_value(step.clone()).map_err(|e| EventError::Field {
                field: STEP_FIELD,
                reason: clip(&e.to_string(), 200),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_steps_when_written_and_read_then_they_round_trip_and_bad_ones_are_named() {
        let run = RunId::new();
        for listing in [
            Listing::Repositories {
                source: None,
                next_token: None,
            },
            Listing::Repositories {
                source: None,
                next_token: Some("t0k3n==".into()),
            },
            Listing::Repositories {
                source: Some(SourceKey {
                    account: "333333333333".parse().unwrap(),
                    region: "eu-west-1".parse().unwrap(),
                }),
                next_token: None,
            },
            Listing::Images {
                account: "123456789012".parse().unwrap(),
                repository: "team/app".parse().unwrap(),
                source: None,
                next_token: Some("abc".into()),
            },
        ] {
            let step = ListingStep {
                run: run.clone(),
                listing,
            };
            let body: Value = serde_json::from_str(&step.to_body()).unwrap();
            assert_eq!(ListingStep::from_body(&body), Some(Ok(step)));
        }
        // A work item is not a step.
        assert_eq!(ListingStep::from_body(&json!({"detail": {}})), None);
        for (bad, names) in [
            (
                json!({"run": "bf-00", "listing": {"list": "images", "account": "1", "repository": "a"}}),
                "account",
            ),
            (
                json!({"run": "x", "listing": {"list": "repositories"}}),
                "bf-",
            ),
            (json!({"run": "bf-00", "listing": {"list": "tags"}}), "tags"),
            (
                json!({"run": "bf-00", "listing": {"list": "repositories", "source": {"account": "333333333333", "region": "Mars"}}}),
                "region",
            ),
            (
                json!({"run": "bf-00", "listing": {"list": "images", "account": "123456789012", "repository": "UPPER"}}),
                "UPPER",
            ),
        ] {
            let err = ListingStep::from_body(&json!({ STEP_FIELD: bad }))
                .unwrap()
                .unwrap_err();
            assert!(err.to_string().contains(names), "{err} should name {names}");
        }
    }
}
