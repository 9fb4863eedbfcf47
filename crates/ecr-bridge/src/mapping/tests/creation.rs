//! Who creates a missing target repository, and with which tag mutability.

use serde_json::json;

use super::{assert_refused, dest, load};
use crate::mapping::{Decision, TagMutability};

#[test]
fn given_create_repository_registry_when_decided_then_the_registry_creates_and_we_never_do() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "team/" }, "destinations": [dest("mirror/{suffix}")], "create_repository": "registry" },
    ]}));

    let Decision::Replicate(r) = config.decide("team/app", Some("v1")) else {
        panic!("expected a replication");
    };

    assert!(r.registry_creates_repository);
    assert_eq!(r.create_repository, None);
}

#[test]
fn given_no_create_repository_when_decided_then_neither_creates() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "app1" }, "destinations": [dest("x1")] },
    ]}));
    let Decision::Replicate(r) = config.decide("app1", None) else {
        panic!("expected a replication");
    };
    assert!(!r.registry_creates_repository);
    assert_eq!(r.create_repository, None);
}

#[test]
fn given_an_unknown_creation_word_when_loaded_then_refused_listing_the_choices() {
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [dest("x1")], "create_repository": "ecr" } ] }),
        "rules[0].create_repository",
        "\"registry\"",
    );
}

#[test]
fn given_exclusion_mutabilities_with_filters_when_loaded_then_kept_for_create_repository() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "app1" }, "destinations": [dest("x1")],
          "create_repository": { "tag_mutability": "IMMUTABLE_WITH_EXCLUSION", "tag_mutability_exclusions": ["sha256-*.sig", "latest"] } },
    ]}));
    let Decision::Replicate(r) = config.decide("app1", None) else {
        panic!("expected a replication");
    };
    let settings = r.create_repository.expect("settings");
    assert_eq!(
        settings.tag_mutability,
        TagMutability::ImmutableWithExclusion
    );
    assert_eq!(
        settings.tag_mutability_exclusions,
        ["sha256-*.sig", "latest"]
    );
}

#[test]
fn given_exclusion_filters_that_do_not_fit_the_mutability_when_loaded_then_each_is_named() {
    let with = |create: serde_json::Value| json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [dest("x1")], "create_repository": create } ] });
    assert_refused(
        with(json!({ "tag_mutability": "MUTABLE_WITH_EXCLUSION" })),
        "rules[0].create_repository.tag_mutability_exclusions",
        "required with MUTABLE_WITH_EXCLUSION",
    );
    assert_refused(
        with(json!({ "tag_mutability": "IMMUTABLE", "tag_mutability_exclusions": ["x*"] })),
        "rules[0].create_repository.tag_mutability_exclusions",
        "only allowed with",
    );
    assert_refused(
        with(
            json!({ "tag_mutability": "IMMUTABLE_WITH_EXCLUSION", "tag_mutability_exclusions": ["ok-*", "no spaces"] }),
        ),
        "rules[0].create_repository.tag_mutability_exclusions[1]",
        "wildcard filter",
    );
    assert_refused(
        with(
            json!({ "tag_mutability": "IMMUTABLE_WITH_EXCLUSION", "tag_mutability_exclusions": [] }),
        ),
        "rules[0].create_repository.tag_mutability_exclusions",
        "must not be empty",
    );
}
