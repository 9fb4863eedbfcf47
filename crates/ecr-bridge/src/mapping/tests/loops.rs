//! The load-time loop guard: a destination in the stated source registry
//! whose rendered names a rule routes again is refused; anything it cannot
//! prove loops is accepted (the replicator checks those at run time).

use serde_json::{json, Value};

use super::{assert_refused, load, refuse, A, B};

const SOURCE_REGION: &str = "us-east-1";

/// The document with `source` set to account A in us-east-1.
fn sourced(rules: Value) -> Value {
    json!({ "version": 1, "source": { "account": A, "region": SOURCE_REGION }, "rules": rules })
}

fn at(account: &str, region: &str, repository: &str) -> Value {
    json!({ "account": account, "region": region, "repository": repository })
}

fn home(repository: &str) -> Value {
    at(A, SOURCE_REGION, repository)
}

#[test]
fn given_a_prefix_rule_renaming_into_its_own_prefix_in_the_source_registry_when_loaded_then_refused_naming_the_rule_twice(
) {
    let err = assert_refused(
        sourced(json!([
            { "name": "app", "match": { "prefix": "app-" }, "destinations": [home("app-mirror-{suffix}")] },
        ])),
        "rules[0].destinations[0]",
        "loop: rules[0] (app) copies into the source registry (222222222222 us-east-1) names that rules[0] (app) routes again",
    );
    let message = err.to_string();
    assert!(
        message.contains("(e.g. \"app-\" to \"app-mirror-\")")
            || message.contains("(e.g. \"app-a\" to \"app-mirror-a\")"),
        "{message}"
    );
    assert!(message.contains("re-trigger itself"), "{message}");
}

#[test]
fn given_an_exact_rule_copying_onto_a_name_another_rule_routes_when_loaded_then_both_rules_are_named(
) {
    let err = assert_refused(
        sourced(json!([
            { "name": "coeus", "match": { "exact": "kuali-coeus" }, "destinations": [home("coeus")] },
            { "name": "mirror", "match": { "exact": "coeus" }, "destinations": [at(B, "eu-west-1", "coeus")] },
        ])),
        "rules[0].destinations[0]",
        "rules[0] (coeus) copies into the source registry (222222222222 us-east-1) names that rules[1] (mirror) routes again (e.g. \"kuali-coeus\" to \"coeus\")",
    );
    assert_eq!(err.problems().len(), 1, "{err}");
}

#[test]
fn given_an_exact_rule_keeping_its_name_in_the_source_registry_when_loaded_then_refused() {
    assert_refused(
        sourced(
            json!([ { "match": { "exact": "kuali-coeus" }, "destinations": [home("{repository}")] } ]),
        ),
        "rules[0].destinations[0]",
        "rules[0] routes again (e.g. \"kuali-coeus\" to \"kuali-coeus\")",
    );
}

#[test]
fn given_a_prefix_rule_whose_names_a_later_rule_routes_when_loaded_then_refused_naming_it() {
    for (earlier, later, text) in [
        // A later prefix rule.
        (
            json!({ "name": "kuali", "match": { "prefix": "kuali-" }, "destinations": [home("mirror/{suffix}")] }),
            json!({ "name": "mirror", "match": { "prefix": "mirror/" }, "destinations": [at(B, "eu-west-1", "{suffix}")] }),
            "names that rules[1] (mirror) routes again",
        ),
        // A later exact rule: the example is that name.
        (
            json!({ "name": "kuali", "match": { "prefix": "kuali-" }, "destinations": [home("copies/{suffix}-copy")] }),
            json!({ "name": "special", "match": { "exact": "copies/research-copy" }, "destinations": [at(B, "eu-west-1", "x1")] }),
            "names that rules[1] (special) routes again (e.g. \"kuali-research\" to \"copies/research-copy\")",
        ),
    ] {
        assert_refused(
            sourced(json!([earlier, later])),
            "rules[0].destinations[0]",
            text,
        );
    }
}

#[test]
fn given_a_looping_shape_in_another_account_or_region_when_loaded_then_accepted() {
    for destination in [
        at(B, SOURCE_REGION, "app-mirror-{suffix}"),
        at(A, "eu-west-1", "app-mirror-{suffix}"),
    ] {
        load(sourced(json!([
            { "match": { "prefix": "app-" }, "destinations": [destination] },
        ])));
    }
}

#[test]
fn given_a_prefix_rule_in_the_source_registry_whose_names_no_rule_matches_when_loaded_then_accepted(
) {
    let config = load(sourced(json!([
        { "match": { "prefix": "kuali-" }, "destinations": [home("coeus/{suffix}")] },
        { "match": { "exact": "research" }, "destinations": [at(B, "eu-west-1", "research")] },
        { "match": { "prefix": "team-" }, "destinations": [at(B, "eu-west-1", "{suffix}")] },
    ])));
    let [source] = config.sources() else {
        panic!("one source kept")
    };
    assert_eq!((source.account(), source.region()), (A, SOURCE_REGION));
}

#[test]
fn given_a_target_only_an_earlier_rule_would_have_taken_from_the_source_when_loaded_then_accepted()
{
    // "kuali-x" is taken by rules[0] (another account), so rules[1] never
    // routes it; rules[1]'s own copies ("copies/...") match nothing.
    load(sourced(json!([
        { "match": { "prefix": "kuali-x" }, "destinations": [at(B, "eu-west-1", "{suffix}")] },
        { "match": { "prefix": "kuali-" }, "destinations": [home("copies/{suffix}")] },
    ])));
}

#[test]
fn given_a_regex_rule_that_loops_when_loaded_then_it_is_left_to_the_run_time_guard() {
    load(sourced(json!([
        { "match": { "regex": "app-(.+)" }, "destinations": [home("app-mirror-{1}")] },
    ])));
}

#[test]
fn given_no_source_when_a_looping_shape_is_loaded_then_accepted_because_undecidable() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "app-" }, "destinations": [home("app-mirror-{suffix}")] },
    ]}));
    assert!(config.sources().is_empty());
}

#[test]
fn given_a_malformed_source_when_loaded_then_its_fields_are_named() {
    let err =
        refuse(json!({ "source": { "account": "123", "region": "nowhere", "x": 1 }, "rules": [] }));
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["source.x", "source.account", "source.region"],
        "{err}"
    );
    assert_refused(
        json!({ "source": { "account": A }, "rules": [] }),
        "source.region",
        "missing required field",
    );
}
