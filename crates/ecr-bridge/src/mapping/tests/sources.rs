//! `sources`: the registries a hub takes events from, each read through
//! its own role; events of any other registry are refused.

use serde_json::{json, Value};

use super::{assert_refused, load, A, B};
use crate::ids::{AccountId, Region};

const C: &str = "444444444444";

fn spoke(account: &str) -> Value {
    json!({ "account": account, "region": "us-east-1",
            "role_arn": format!("arn:aws:iam::{account}:role/ecr-bridge-source-read"),
            "external_id": "ecr-bridge-hub" })
}

fn hub(sources: Value) -> Value {
    json!({ "version": 1, "sources": sources,
            "rules": [ { "match": { "prefix": "team-" },
                         "destinations": [ { "account": A, "region": "us-east-1", "repository": "mirror/{suffix}" } ] } ] })
}

fn id(account: &str) -> AccountId {
    account.parse().unwrap()
}

fn region(name: &str) -> Region {
    name.parse().unwrap()
}

#[test]
fn given_two_spokes_when_an_event_of_each_is_placed_then_each_is_read_through_its_own_role() {
    let config = load(hub(json!([spoke(B), spoke(C)])));

    for account in [B, C] {
        let source = config
            .source_for(&id(account), &region("us-east-1"))
            .expect("listed")
            .expect("an entry");
        let access = source.access(None);
        assert_eq!(
            access.role_arn().map(|r| r.to_string()),
            Some(format!(
                "arn:aws:iam::{account}:role/ecr-bridge-source-read"
            ))
        );
        assert_eq!(
            access.external_id().map(|e| e.as_str()),
            Some("ecr-bridge-hub")
        );
    }
}

#[test]
fn given_sources_when_an_event_of_another_account_or_region_arrives_then_it_is_refused_naming_both()
{
    let config = load(hub(json!([spoke(B), spoke(C)])));

    let other = config
        .source_for(&id("555555555555"), &region("us-east-1"))
        .expect_err("not listed");
    assert_eq!(
        other.to_string(),
        "555555555555/us-east-1 is not among the mapping's sources (333333333333/us-east-1, 444444444444/us-east-1): add it to \"sources\" to replicate its images"
    );
    // A spoke's account in a region it was not listed for is not a source.
    assert!(config.source_for(&id(B), &region("eu-west-1")).is_err());
}

#[test]
fn given_no_sources_when_an_event_arrives_then_any_registry_is_taken() {
    let config = load(json!({ "rules": [] }));
    assert_eq!(config.source_for(&id(B), &region("eu-west-1")), Ok(None));
}

#[test]
fn given_a_source_without_a_role_when_placed_then_the_deployment_default_role_reads_it() {
    let config = load(hub(json!([{ "account": B, "region": "us-east-1" }])));
    let default: crate::ids::AssumeRole = crate::ids::AssumeRole {
        role_arn: format!("arn:aws:iam::{B}:role/default").parse().unwrap(),
        external_id: None,
    };
    let source = config.sources().first().unwrap();
    assert_eq!(
        source.access(Some(&default)).role_arn(),
        Some(&default.role_arn)
    );
    assert_eq!(source.access(None).role_arn(), None);
}

#[test]
fn given_bad_sources_when_loaded_then_each_problem_is_named_at_its_path() {
    assert_refused(
        json!({ "source": spoke(B), "sources": [spoke(C)], "rules": [] }),
        "sources",
        "give either source or sources, not both",
    );
    assert_refused(
        hub(json!([spoke(B), spoke(C), spoke(B)])),
        "sources[2]",
        "same account and region as sources[0]",
    );
    assert_refused(hub(json!([])), "sources", "");
    assert_refused(
        hub(json!([{ "account": B, "region": "us-east-1",
                     "role_arn": format!("arn:aws:iam::{C}:role/read") }])),
        "sources[0].role_arn",
        "role is in account 444444444444 but the registry's account is 333333333333",
    );
    assert_refused(
        hub(json!([{ "account": B, "region": "us-east-1", "external_id": "x-y" }])),
        "sources[0].external_id",
        "only used when assuming a role",
    );
    assert_refused(
        hub(json!([{ "account": B, "region": "us-east-1", "token": "x" }])),
        "sources[0].token",
        "",
    );
    let many: Vec<Value> = (0..=crate::mapping::MAX_SOURCES)
        .map(|i| json!({ "account": format!("{:012}", 100_000_000_000u64 + i as u64), "region": "us-east-1" }))
        .collect();
    assert_refused(hub(json!(many)), "sources", "");
}

#[test]
fn given_a_destination_in_a_spoke_that_a_rule_routes_again_when_loaded_then_the_loop_is_refused() {
    // A copy into spoke C's registry is forwarded to the hub again by C's
    // rule, so a name the rule takes would loop through C.
    let doc = json!({ "sources": [spoke(B), spoke(C)],
        "rules": [ { "match": { "prefix": "team-" },
                     "destinations": [ { "account": C, "region": "us-east-1", "repository": "team-copy-{suffix}" } ] } ] });
    assert_refused(
        doc,
        "rules[0].destinations[0]",
        "loop: rules[0] copies into the source registry (444444444444 us-east-1)",
    );
}
