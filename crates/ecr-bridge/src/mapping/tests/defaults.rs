//! Defaults and shorthands: what an omitted (or null) field means.

use super::*;

#[test]
fn given_create_repository_shorthands_when_loaded_then_true_is_defaults_and_false_is_never() {
    let with = |create: Value| {
        load(json!({ "rules": [
            { "match": { "exact": "app1" }, "destinations": [dest("x1")], "create_repository": create },
        ]}))
        .rules()[0]
            .create_repository()
            .cloned()
    };
    assert_eq!(with(json!(true)), Some(RepositorySettings::default()));
    assert_eq!(
        RepositorySettings::default(),
        RepositorySettings {
            tag_mutability: TagMutability::Mutable,
            tag_mutability_exclusions: Vec::new(),
            scan_on_push: false,
            encryption: Encryption::Aes256
        }
    );
    assert_eq!(with(json!(false)), None);
    assert_eq!(with(json!(null)), None);
    assert_eq!(with(json!({})), Some(RepositorySettings::default()));
    assert_eq!(
        with(json!({ "encryption": { "type": "KMS" } })).map(|s| s.encryption),
        Some(Encryption::Kms { key: None })
    );
    assert_eq!(
        with(json!({ "encryption": { "type": "AES256" } })).map(|s| s.encryption),
        Some(Encryption::Aes256)
    );
}

#[test]
fn given_minimal_rule_when_loaded_then_defaults_apply() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "app1" }, "destinations": [dest("x1")] },
    ]}));
    let rule = &config.rules()[0];
    assert_eq!(rule.tags(), &TagFilter::default());
    assert!(rule.tags().untagged);
    assert_eq!(rule.create_repository(), None);
    assert!(!rule.propagate_deletes());
    assert!(!rule.copy_referrers());
    let Decision::Replicate(r) = config.decide("app1", None) else {
        panic!()
    };
    assert!(!r.propagate_deletes && !r.copy_referrers);
    assert_eq!(r.rule_index, 0);
}

#[test]
fn given_empty_rules_when_loaded_then_valid_and_nothing_replicates() {
    let config = load(json!({ "rules": [] }));
    assert_eq!(
        config.decide("anything", Some("v1")),
        Decision::NoMatchingRule
    );
    assert!(config.explain("anything", None).is_empty());
}

#[test]
fn given_flags_set_when_decided_then_replication_carries_them() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "app1" }, "destinations": [dest("x1")],
          "propagate_deletes": true, "copy_referrers": true },
    ]}));
    let Decision::Replicate(r) = config.decide("app1", Some("v1")) else {
        panic!()
    };
    assert!(r.propagate_deletes && r.copy_referrers);
}

#[test]
fn given_nulls_for_optional_fields_when_loaded_then_they_read_as_absent() {
    let config = load(json!({ "version": null, "rules": [
        { "name": null, "match": { "exact": "app1", "prefix": null },
          "destinations": [{ "account": A, "region": "us-east-1", "role_arn": null, "repository": null }],
          "tags": null, "create_repository": null, "propagate_deletes": null },
    ]}));
    assert_eq!(targets(&config.decide("app1", None)), ["app1"]);
}
