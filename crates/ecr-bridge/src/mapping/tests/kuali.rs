//! The Kuali migration: two exact rules, or one prefix rule, and the
//! documented example end to end.

use super::*;

#[test]
fn given_two_exact_kuali_rules_when_each_repository_is_pushed_then_each_gets_its_own_name() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "kuali-coeus" }, "destinations": [dest("coeus")] },
        { "match": { "exact": "kuali-coeus-feature" }, "destinations": [dest("coeus-feature")] },
    ]}));
    assert_eq!(
        targets(&config.decide("kuali-coeus", Some("2501"))),
        ["coeus"]
    );
    assert_eq!(
        targets(&config.decide("kuali-coeus-feature", Some("2501"))),
        ["coeus-feature"]
    );
    assert_eq!(
        config.decide("kuali-research", Some("2501")),
        Decision::NoMatchingRule
    );
}

#[test]
fn given_one_kuali_prefix_rule_when_both_repositories_are_pushed_then_suffix_names_them() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")] },
    ]}));
    assert_eq!(
        targets(&config.decide("kuali-coeus", Some("2501"))),
        ["coeus"]
    );
    assert_eq!(
        targets(&config.decide("kuali-coeus-feature", None)),
        ["coeus-feature"]
    );
    assert_eq!(config.decide("coeus", None), Decision::NoMatchingRule);
}

#[test]
fn given_the_documented_example_when_loaded_then_every_field_is_read() {
    let config = load(brief_example());
    let rules = config.rules();
    assert_eq!(rules.len(), 3);
    let kuali = &rules[0];
    assert_eq!(kuali.name(), "kuali");
    assert_eq!(
        kuali.matcher(),
        &RepositoryMatch::Exact("kuali-coeus".into())
    );
    let d = &kuali.destinations()[0];
    assert_eq!(
        (d.account(), d.region(), d.external_id()),
        (A, "us-east-1", Some("kuali-sync"))
    );
    assert_eq!(
        d.role_arn(),
        Some("arn:aws:iam::222222222222:role/ecr-bridge-push")
    );
    assert_eq!(d.repository().as_str(), "coeus");
    assert_eq!(
        kuali.create_repository(),
        Some(&RepositorySettings {
            tag_mutability: TagMutability::Immutable,
            tag_mutability_exclusions: Vec::new(),
            scan_on_push: true,
            encryption: Encryption::Kms {
                key: Some("arn:aws:kms:us-east-1:222222222222:key/abc".into())
            },
        })
    );
    assert!(kuali.tags().untagged);
    assert_eq!(kuali.tags().include.len(), 2);
    // Unnamed rules are named by position, for logs.
    assert_eq!(rules[1].name(), "rules[1]");
    assert_eq!(rules[2].label(), "rules[2]");
    assert_eq!(kuali.label(), "rules[0] (kuali)");
}

#[test]
fn given_the_documented_example_when_pushes_arrive_then_each_goes_where_its_first_rule_says() {
    let config = load(brief_example());

    let coeus = config.decide("kuali-coeus", Some("v2501"));
    assert_eq!(rule_of(&coeus), "kuali");
    assert_eq!(targets(&coeus), ["coeus"]);

    let other = config.decide("kuali-research", Some("anything"));
    assert_eq!(rule_of(&other), "rules[1]");
    assert_eq!(targets(&other), ["research"]);

    let team = config.decide("team-ml/trainer", Some("latest"));
    assert_eq!(targets(&team), ["mirror/ml/trainer"]);
    let Decision::Replicate(r) = team else {
        unreachable!()
    };
    assert_eq!(
        (
            r.destinations[0].access.account.as_str(),
            r.destinations[0].access.region.as_str()
        ),
        (B, "eu-west-1")
    );
    assert_eq!(r.create_repository, None);
}
