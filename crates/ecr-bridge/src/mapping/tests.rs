//! Scenarios for the config as a whole: loading, deciding, explaining.

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

/// The message of a refused config, checked to contain `path: ` and `text`.
fn assert_refused(doc: Value, path: &str, text: &str) -> ConfigError {
    let err = refuse(doc);
    let message = err.to_string();
    let expected = format!("{path}: ");
    assert!(
        err.problems()
            .iter()
            .any(|p| p.path == path && p.to_string().contains(text)),
        "expected a problem at {expected:?} containing {text:?}, got: {message}"
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

// ---- the Kuali case ------------------------------------------------------

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
            r.destinations[0].account.as_str(),
            r.destinations[0].region.as_str()
        ),
        (B, "eu-west-1")
    );
    assert_eq!(r.create_repository, None);
}

// ---- match kinds ---------------------------------------------------------

#[test]
fn given_prefix_rule_when_template_uses_repository_and_suffix_then_both_render() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "gen3/" },
          "destinations": [dest("mirror/{suffix}"), dest("all/{repository}")] },
    ]}));
    assert_eq!(
        targets(&config.decide("gen3/fence", Some("1.0"))),
        ["mirror/fence", "all/gen3/fence"]
    );
}

#[test]
fn given_regex_rule_with_numbered_and_named_groups_when_matched_then_template_uses_both() {
    let config = load(json!({ "rules": [
        { "match": { "regex": "team-(?P<team>[a-z0-9]+)/(.+)" },
          "destinations": [dest("mirror/{team}/{2}"), dest("by-number/{1}/{2}")] },
    ]}));
    assert_eq!(
        targets(&config.decide("team-ml/trainer/gpu", Some("v1"))),
        ["mirror/ml/trainer/gpu", "by-number/ml/trainer/gpu"]
    );
}

#[test]
fn given_unanchored_regex_when_name_only_contains_a_match_then_rule_does_not_match() {
    // `(?:...)` wrapping means `a|b` is `^(?:a|b)$`, not `^a|b$`.
    let config = load(json!({ "rules": [
        { "match": { "regex": "app|web" }, "destinations": [dest("x/{repository}")] },
    ]}));
    assert_eq!(targets(&config.decide("web", None)), ["x/web"]);
    assert_eq!(config.decide("webapp", None), Decision::NoMatchingRule);
    assert_eq!(config.decide("my-app", None), Decision::NoMatchingRule);
}

#[test]
fn given_no_repository_template_when_matched_then_source_name_is_kept() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "app" }, "destinations": [{ "account": A, "region": "us-east-1" }] },
    ]}));
    assert_eq!(targets(&config.decide("app/api", None)), ["app/api"]);
    assert_eq!(
        config.rules()[0].destinations()[0].repository().as_str(),
        "{repository}"
    );
}

// ---- ordering ------------------------------------------------------------

#[test]
fn given_overlapping_rules_when_a_name_matches_both_then_the_first_wins() {
    let config = load(json!({ "rules": [
        { "name": "specific", "match": { "prefix": "kuali-coeus" }, "destinations": [dest("special")] },
        { "name": "general", "match": { "regex": "kuali-(.+)" }, "destinations": [dest("{1}")] },
    ]}));
    assert_eq!(rule_of(&config.decide("kuali-coeus-x", None)), "specific");
    assert_eq!(targets(&config.decide("kuali-coeus-x", None)), ["special"]);
    assert_eq!(targets(&config.decide("kuali-other", None)), ["other"]);
}

#[test]
fn given_first_matching_rule_excludes_the_tag_when_decided_then_later_rules_are_not_tried() {
    let config = load(json!({ "rules": [
        { "name": "releases", "match": { "prefix": "app" }, "destinations": [dest("rel/{repository}")],
          "tags": { "include": ["v*"] } },
        { "name": "everything", "match": { "regex": ".+" }, "destinations": [dest("all/{repository}")] },
    ]}));
    assert_eq!(
        config.decide("app", Some("nightly")),
        Decision::TagFiltered {
            rule: "releases".into(),
            rule_index: 0,
            reason: TagFilterReason::NotIncluded {
                tag: "nightly".into(),
                include: vec!["v*".into()],
            },
        }
    );
    assert_eq!(
        targets(&config.decide("other", Some("nightly"))),
        ["all/other"]
    );
}

// ---- tag filters ---------------------------------------------------------

#[test]
fn given_include_and_exclude_when_tags_arrive_then_included_and_not_excluded_ones_replicate() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "kuali-coeus" }, "destinations": [dest("coeus")],
          "tags": { "include": ["v*", "release-*"], "exclude": ["*-dirty"] } },
    ]}));
    let replicates = |tag: &str| {
        matches!(
            config.decide("kuali-coeus", Some(tag)),
            Decision::Replicate(_)
        )
    };
    assert!(replicates("v1.2"));
    assert!(replicates("release-2501"));
    assert!(!replicates("latest"));
    assert_eq!(
        config.decide("kuali-coeus", Some("latest")).to_string(),
        "rules[0] matched, but tag \"latest\" matches no include pattern (\"v*\", \"release-*\")"
    );
    assert!(!replicates("v1.2-dirty"));
    assert_eq!(
        config.decide("kuali-coeus", Some("v1.2-dirty")),
        Decision::TagFiltered {
            rule: "rules[0]".into(),
            rule_index: 0,
            reason: TagFilterReason::Excluded {
                tag: "v1.2-dirty".into(),
                pattern: "*-dirty".into()
            },
        }
    );
    // untagged defaults to true
    assert!(matches!(
        config.decide("kuali-coeus", None),
        Decision::Replicate(_)
    ));
}

#[test]
fn given_only_exclude_when_tags_arrive_then_all_but_excluded_replicate() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "app1" }, "destinations": [dest("x1")], "tags": { "exclude": ["pr-?", "tmp*"] } },
    ]}));
    assert!(matches!(
        config.decide("app1", Some("latest")),
        Decision::Replicate(_)
    ));
    assert!(matches!(
        config.decide("app1", Some("pr-12")),
        Decision::Replicate(_)
    ));
    assert!(matches!(
        config.decide("app1", Some("pr-1")),
        Decision::TagFiltered { .. }
    ));
    assert!(matches!(
        config.decide("app1", Some("tmp")),
        Decision::TagFiltered { .. }
    ));
}

#[test]
fn given_untagged_off_when_a_digest_only_push_arrives_then_it_is_filtered() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "app1" }, "destinations": [dest("x1")], "tags": { "untagged": false } },
    ]}));
    let decision = config.decide("app1", None);
    assert_eq!(
        decision,
        Decision::TagFiltered {
            rule: "rules[0]".into(),
            rule_index: 0,
            reason: TagFilterReason::UntaggedOff
        }
    );
    assert!(matches!(
        config.decide("app1", Some("v1")),
        Decision::Replicate(_)
    ));
}

// ---- defaults and shorthands ---------------------------------------------

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

// ---- per-event errors ----------------------------------------------------

#[test]
fn given_regex_capturing_uppercase_when_rendered_then_only_that_target_is_an_error_naming_the_rule()
{
    let config = load(json!({ "rules": [
        { "name": "loose", "match": { "regex": "(?i)legacy-(.+)" },
          "destinations": [dest("new/{1}"), dest("archive/legacy")] },
    ]}));
    let Decision::Replicate(r) = config.decide("legacy-App", Some("v1")) else {
        panic!()
    };
    let err = r.destinations[0].repository.clone().unwrap_err();
    assert_eq!(err.rule, "loose");
    assert_eq!(err.destination_index, 0);
    assert_eq!(err.rendered, "new/App");
    assert!(err.to_string().contains("rule \"loose\""), "{err}");
    assert!(err.to_string().contains("not a valid ECR repository name"));
    assert_eq!(
        r.destinations[1].repository,
        Ok("archive/legacy".to_string())
    );
    assert_eq!(r.invalid_targets().count(), 1);
    assert_eq!(
        Decision::Replicate(r).to_string(),
        "rules[0] (loose) matched, replicates to 222222222222 us-east-1 <rule \"loose\" destinations[0]: \
         repository template \"new/{1}\" gave \"new/App\", not a valid ECR repository name>, \
         222222222222 us-east-1 archive/legacy"
    );
}

#[test]
fn given_prefix_equal_to_the_whole_name_when_rendered_then_empty_suffix_is_an_error_not_a_panic() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "app" }, "destinations": [dest("{suffix}")] },
    ]}));
    let Decision::Replicate(r) = config.decide("app", None) else {
        panic!()
    };
    assert!(r.destinations[0].repository.is_err());
}

// ---- explain -------------------------------------------------------------

#[test]
fn given_shadowed_and_non_matching_rules_when_explained_then_each_verdict_says_why() {
    let config = load(json!({ "rules": [
        { "name": "research", "match": { "prefix": "research-" }, "destinations": [dest("{suffix}")] },
        { "name": "kuali", "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")],
          "tags": { "exclude": ["*-dirty"] } },
        { "name": "catch-all", "match": { "regex": ".+" }, "destinations": [dest("all/{repository}")] },
        { "name": "teams", "match": { "regex": "team-(.+)" }, "destinations": [dest("{1}")] },
    ]}));

    let verdicts = config.explain("kuali-coeus", Some("v1"));
    let lines: Vec<String> = verdicts.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "rules[0] (research): not matched: name does not start with \"research-\"",
            "rules[1] (kuali): matched, replicates to 222222222222 us-east-1 coeus",
            "rules[2] (catch-all): shadowed by an earlier rule: rules[1] (kuali)",
            "rules[3] (teams): not matched: name does not match regex \"team-(.+)\" (whole name)",
        ]
    );
    assert_eq!(
        verdicts[2].verdict,
        Verdict::Shadowed {
            by_rule_index: 1,
            by_rule: "kuali".into()
        }
    );

    let filtered = config.explain("kuali-coeus", Some("v1-dirty"));
    assert_eq!(
        filtered[1].to_string(),
        "rules[1] (kuali): matched, but tag \"v1-dirty\" excluded by \"*-dirty\""
    );
    assert!(matches!(filtered[2].verdict, Verdict::Shadowed { .. }));
}

#[test]
fn given_any_push_when_explained_then_the_deciding_verdict_agrees_with_decide() {
    let config = load(brief_example());
    for (repository, tag) in [
        ("kuali-coeus", Some("v1")),
        ("kuali-coeus", Some("latest")),
        ("kuali-coeus", None),
        ("kuali-x", Some("v1")),
        ("team-a/b", None),
        ("nothing", None),
    ] {
        let decided = config.decide(repository, tag);
        let deciding = config.explain(repository, tag).into_iter().find(|v| {
            matches!(
                v.verdict,
                Verdict::Replicate(_) | Verdict::TagFiltered { .. }
            )
        });
        match (decided, deciding.map(|v| (v.rule_index, v.verdict))) {
            (Decision::NoMatchingRule, None) => {}
            (Decision::Replicate(a), Some((_, Verdict::Replicate(b)))) => assert_eq!(a, b),
            (
                Decision::TagFiltered {
                    rule_index, reason, ..
                },
                Some((i, Verdict::TagFiltered { reason: r })),
            ) => {
                assert_eq!((rule_index, reason), (i, r))
            }
            (d, v) => panic!("{repository}:{tag:?}: decide {d:?} but explain {v:?}"),
        }
    }
}

#[test]
fn given_a_plan_when_serialized_then_json_is_flat_and_readable() {
    let config = load(json!({ "rules": [
        { "name": "a", "match": { "exact": "app1" }, "destinations": [dest("x1")] },
        { "name": "b", "match": { "regex": "(?i)(.+)" }, "destinations": [dest("{1}")], "create_repository": true },
    ]}));
    let plan = serde_json::to_value(config.explain("app1", Some("v1"))).unwrap();
    assert_eq!(
        plan,
        json!([
            { "rule_index": 0, "rule": "a", "verdict": "replicate",
              "destinations": [{ "account": A, "region": "us-east-1", "repository": "x1" }],
              "create_repository": null, "propagate_deletes": false, "copy_referrers": false },
            { "rule_index": 1, "rule": "b", "verdict": "shadowed", "by_rule_index": 0, "by_rule": "a" },
        ])
    );
    let decision = serde_json::to_value(config.decide("Upper", None)).unwrap();
    assert_eq!(decision["decision"], "replicate");
    assert_eq!(
        decision["create_repository"],
        json!({ "tag_mutability": "MUTABLE", "scan_on_push": false, "encryption": { "type": "AES256" } })
    );
    let error = decision["destinations"][0]["repository_error"]
        .as_str()
        .unwrap();
    assert!(error.contains("\"Upper\""), "{error}");

    let printed = serde_json::to_value(&config.rules()[1]).unwrap();
    assert_eq!(printed["match"], json!({ "regex": "(?i)(.+)" }));
    assert_eq!(printed["destinations"][0]["repository"], "{1}");
}

// ---- invalid configs: one problem each -----------------------------------

fn with_destination(d: Value) -> Value {
    json!({ "rules": [ { "match": { "prefix": "app" }, "destinations": [d] } ] })
}

#[test]
fn given_bad_accounts_when_loaded_then_the_account_path_is_named() {
    let err = assert_refused(
        with_destination(json!({ "account": "12345", "region": "us-east-1" })),
        "rules[0].destinations[0].account",
        "must be 12 digits (got \"12345\")",
    );
    assert_eq!(
        err.to_string(),
        "rules[0].destinations[0].account: must be 12 digits (got \"12345\")"
    );
    assert_refused(
        with_destination(json!({ "account": "12345678901x", "region": "us-east-1" })),
        "rules[0].destinations[0].account",
        "must be 12 digits",
    );
    assert_refused(
        with_destination(json!({ "account": 222222222222u64, "region": "us-east-1" })),
        "rules[0].destinations[0].account",
        "invalid type: integer 222222222222, expected a string",
    );
    assert_refused(
        with_destination(json!({ "region": "us-east-1" })),
        "rules[0].destinations[0].account",
        "missing required field",
    );
}

#[test]
fn given_bad_region_when_loaded_then_the_region_path_is_named() {
    assert_refused(
        with_destination(json!({ "account": A, "region": "us-east-1a" })),
        "rules[0].destinations[0].region",
        "must be a region code",
    );
}

#[test]
fn given_role_in_another_account_when_loaded_then_it_is_refused() {
    assert_refused(
        with_destination(json!({ "account": A, "region": "us-east-1",
            "role_arn": "arn:aws:iam::111111111111:role/push" })),
        "rules[0].destinations[0].role_arn",
        "role is in account 111111111111 but the destination account is 222222222222",
    );
    assert_refused(
        with_destination(json!({ "account": A, "region": "us-east-1", "role_arn": "push-role" })),
        "rules[0].destinations[0].role_arn",
        "must be an IAM role ARN",
    );
}

#[test]
fn given_external_id_without_role_when_loaded_then_it_is_refused() {
    assert_refused(
        with_destination(
            json!({ "account": A, "region": "us-east-1", "external_id": "kuali-sync" }),
        ),
        "rules[0].destinations[0].external_id",
        "set role_arn too",
    );
    assert_refused(
        with_destination(json!({ "account": A, "region": "us-east-1",
            "role_arn": "arn:aws:iam::222222222222:role/push", "external_id": "no spaces" })),
        "rules[0].destinations[0].external_id",
        "must be 2-1224 characters",
    );
}

#[test]
fn given_zero_or_two_match_kinds_when_loaded_then_exactly_one_is_demanded() {
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1", "prefix": "app" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match",
        "exactly one of exact, prefix, regex (got exact and prefix)",
    );
    assert_refused(
        json!({ "rules": [ { "match": {}, "destinations": [dest("x1")] } ] }),
        "rules[0].match",
        "exactly one of exact, prefix, regex (got none)",
    );
    assert_refused(
        json!({ "rules": [ { "destinations": [dest("x1")] } ] }),
        "rules[0].match",
        "missing required field",
    );
}

#[test]
fn given_unknown_fields_when_loaded_then_typos_are_not_ignored() {
    assert_refused(
        json!({ "rules": [], "rule": [] }),
        "rule",
        "unknown field (expected one of: version, source, rules)",
    );
    assert_refused(
        with_destination(json!({ "account": A, "region": "us-east-1", "repo": "x1" })),
        "rules[0].destinations[0].repo",
        "unknown field",
    );
    let err = assert_refused(
        json!({ "rules": [ { "match": { "prefix": "app" }, "destination": [dest("x1")] } ] }),
        "rules[0].destination",
        "unknown field",
    );
    // ... and the real field is then missing: both are said.
    assert!(err
        .to_string()
        .contains("rules[0].destinations: missing required field"));
    assert_refused(
        json!({ "rules": [ { "match": { "prefix": "app" }, "destinations": [dest("x1")],
            "tags": { "includes": ["v*"] } } ] }),
        "rules[0].tags.includes",
        "unknown field",
    );
}

#[test]
fn given_bad_glob_when_loaded_then_the_pattern_and_index_are_named() {
    assert_refused(
        json!({ "rules": [ { "match": { "prefix": "app" }, "destinations": [dest("x1")],
            "tags": { "include": ["v*", "v/*"] } } ] }),
        "rules[0].tags.include[1]",
        "invalid glob \"v/*\"",
    );
}

#[test]
fn given_template_variable_the_match_does_not_provide_when_loaded_then_available_ones_are_listed() {
    assert_refused(
        json!({ "rules": [
            { "match": { "prefix": "app" }, "destinations": [dest("{suffix}")] },
            { "match": { "regex": "team-(?P<team>[a-z]+)" }, "destinations": [dest("{suffix}")] },
        ]}),
        "rules[1].destinations[0].repository",
        "unknown template variable {suffix} (available: {repository}, {1}, {team})",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [dest("x/{name}")] } ] }),
        "rules[0].destinations[0].repository",
        "unknown template variable {name} (available: {repository})",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [dest("x/{repository")] } ] }),
        "rules[0].destinations[0].repository",
        "unbalanced braces",
    );
}

#[test]
fn given_group_number_beyond_the_regex_groups_when_loaded_then_it_is_refused() {
    assert_refused(
        json!({ "rules": [ { "match": { "regex": "(a+)-(b+)" }, "destinations": [dest("{3}")] } ] }),
        "rules[0].destinations[0].repository",
        "unknown template variable {3} (available: {repository}, {1}, {2})",
    );
}

#[test]
fn given_invalid_or_oversized_regex_when_loaded_then_it_is_refused() {
    assert_refused(
        json!({ "rules": [ { "match": { "regex": "team-(" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.regex",
        "invalid regex",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "regex": "a".repeat(MAX_REGEX_LEN + 1) }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.regex",
        "longer than 1000 characters",
    );
    // Short but huge once compiled: the size limit catches it.
    assert_refused(
        json!({ "rules": [ { "match": { "regex": "(\\w{100}){100}" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.regex",
        "invalid regex",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "regex": "(?P<suffix>.+)" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.regex",
        "reserved",
    );
    // ... while realistic bounded repetitions stay well inside the limit.
    load(
        json!({ "rules": [ { "match": { "regex": "(?P<env>dev|staging|prod)-[a-z0-9-]{1,63}/(.{1,200})" },
        "destinations": [dest("{env}/{2}")] } ] }),
    );
}

#[test]
fn given_empty_or_too_many_destinations_when_loaded_then_it_is_refused() {
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [] } ] }),
        "rules[0].destinations",
        "must not be empty",
    );
    let many: Vec<Value> = (0..21).map(|i| dest(&format!("x{i}"))).collect();
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": many } ] }),
        "rules[0].destinations",
        "at most 20 entries allowed (got 21)",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [dest("x1"), dest("x1")] } ] }),
        "rules[0].destinations[1]",
        "same account, region and repository as destinations[0]",
    );
}

#[test]
fn given_unsupported_version_when_loaded_then_it_is_refused() {
    assert_refused(
        json!({ "version": 2, "rules": [] }),
        "version",
        "unsupported version 2",
    );
    assert_refused(
        json!({ "version": "1", "rules": [] }),
        "version",
        "expected the integer 1",
    );
    assert!(MappingConfig::from_json(r#"{"version": 1, "rules": []}"#).is_ok());
}

#[test]
fn given_text_that_is_not_json_when_loaded_then_line_and_column_are_given() {
    let err = MappingConfig::from_json("{\n  \"rules\": [,]\n}").unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*line, *column), (2, 13));
    assert!(
        err.to_string()
            .starts_with("mapping config is not valid JSON: "),
        "{err}"
    );
    assert!(err.to_string().ends_with("at line 2 column 13"), "{err}");
    assert!(matches!(
        MappingConfig::from_json(""),
        Err(ConfigError::Syntax { .. })
    ));
    // Nesting past serde_json's recursion limit is a syntax error, not a stack overflow.
    assert!(matches!(
        MappingConfig::from_json(&"[".repeat(100_000)),
        Err(ConfigError::Syntax { .. })
    ));
    assert_refused(
        json!([]),
        "(document)",
        "invalid type: array, expected an object",
    );
    assert_refused(json!({}), "rules", "missing required field");
}

#[test]
fn given_document_over_the_size_limit_when_loaded_then_it_is_refused_before_parsing() {
    let text = format!("{{\"rules\": []}}{}", " ".repeat(MAX_DOCUMENT_BYTES));
    assert_eq!(
        MappingConfig::from_json(&text),
        Err(ConfigError::TooLarge {
            size: text.len(),
            limit: MAX_DOCUMENT_BYTES
        })
    );
}

#[test]
fn given_too_many_rules_when_loaded_then_it_is_refused() {
    let rules: Vec<Value> = (0..=MAX_RULES)
        .map(|i| json!({ "match": { "exact": format!("app{i}") }, "destinations": [dest("x1")] }))
        .collect();
    assert_refused(
        json!({ "rules": rules }),
        "rules",
        "at most 500 entries allowed (got 501)",
    );
}

#[test]
fn given_unreachable_rule_when_loaded_then_it_is_refused_with_the_rule_that_shadows_it() {
    assert_refused(
        json!({ "rules": [
            { "name": "all-kuali", "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")] },
            { "match": { "exact": "kuali-coeus" }, "destinations": [dest("coeus")] },
        ]}),
        "rules[1].match",
        "unreachable: every name it matches is matched first by rules[0] (all-kuali)",
    );
    assert_refused(
        json!({ "rules": [
            { "match": { "regex": "kuali-.*" }, "destinations": [dest("x1")] },
            { "match": { "exact": "kuali-coeus" }, "destinations": [dest("coeus")] },
        ]}),
        "rules[1].match",
        "unreachable",
    );
}

#[test]
fn given_reused_rule_name_when_loaded_then_it_is_refused() {
    assert_refused(
        json!({ "rules": [
            { "name": "x", "match": { "exact": "app1" }, "destinations": [dest("x1")] },
            { "name": "x", "match": { "exact": "app2" }, "destinations": [dest("x2")] },
        ]}),
        "rules[1].name",
        "already used by rules[0]",
    );
}

#[test]
fn given_bad_create_repository_settings_when_loaded_then_each_field_is_named() {
    let with = |create: Value| json!({ "rules": [ { "match": { "exact": "app1" }, "destinations": [dest("x1")], "create_repository": create } ] });
    assert_refused(
        with(json!({ "tag_mutability": "immutable" })),
        "rules[0].create_repository.tag_mutability",
        "must be one of \"MUTABLE\", \"IMMUTABLE\", \"IMMUTABLE_WITH_EXCLUSION\", \"MUTABLE_WITH_EXCLUSION\" (got \"immutable\")",
    );
    assert_refused(
        with(json!({ "encryption": { "type": "AES256", "kms_key": "alias/x" } })),
        "rules[0].create_repository.encryption.kms_key",
        "only allowed with \"type\": \"KMS\"",
    );
    assert_refused(
        with(json!({ "encryption": { "type": "DSSE" } })),
        "rules[0].create_repository.encryption.type",
        "must be one of",
    );
    assert_refused(
        with(json!("yes")),
        "rules[0].create_repository",
        "must be one of true, false, \"registry\" or an object of settings (got \"yes\")",
    );
    assert_refused(
        with(json!({ "scan_on_push": "true" })),
        "rules[0].create_repository.scan_on_push",
        "expected a boolean",
    );
}

#[test]
fn given_invalid_match_values_when_loaded_then_they_are_refused() {
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "Kuali-Coeus" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.exact",
        "not a valid ECR repository name",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "prefix": "" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.prefix",
        "must not be empty",
    );
    assert_refused(
        json!({ "rules": [ { "match": { "prefix": "Team-" }, "destinations": [dest("x1")] } ] }),
        "rules[0].match.prefix",
        "lowercase",
    );
}

// ---- invalid configs: many problems at once ------------------------------

#[test]
fn given_several_mistakes_when_loaded_then_all_are_reported_first_one_leading() {
    let err = refuse(json!({
        "version": 1,
        "rules": [
            { "match": { "exact": "app1", "regex": "x" }, "destinations": [dest("x1")] },
            { "match": { "prefix": "app" }, "destinations": [
                { "account": "12345", "region": "mars-1", "repository": "{2}" } ],
              "tags": { "include": ["v/*"] }, "extra": 1 },
            { "match": { "regex": "(a)" }, "destinations": [dest("{2}")], "copy_referrers": "yes" },
        ]
    }));
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rules[0].match",
            "rules[1].extra",
            "rules[1].destinations[0].account",
            "rules[1].destinations[0].region",
            "rules[1].destinations[0].repository",
            "rules[1].tags.include[0]",
            "rules[2].destinations[0].repository",
            "rules[2].copy_referrers",
        ]
    );
    let message = err.to_string();
    assert!(
        message.starts_with("rules[0].match: exactly one of"),
        "{message}"
    );
    assert_eq!(message.matches("; ").count(), 7, "{message}");
}

#[test]
fn given_very_many_mistakes_when_displayed_then_the_message_is_bounded() {
    let include: Vec<Value> = (0..50).map(|_| json!("a/b")).collect();
    let err = refuse(
        json!({ "rules": [ { "match": { "prefix": "app" }, "destinations": [dest("x1")],
        "tags": { "include": include } } ] }),
    );
    assert_eq!(err.problems().len(), 50);
    assert!(err.to_string().ends_with("; and 30 more"), "{err}");
}

#[test]
fn given_long_hostile_values_when_refused_then_messages_quote_at_most_100_characters() {
    let long = "x".repeat(10_000);
    let err = refuse(json!({ "rules": [ { "match": { "exact": "app1" },
        "destinations": [ { "account": long, "region": long, "repository": format!("{{{long}}}") } ] } ],
        long.clone(): 1 }));
    let message = err.to_string();
    assert!(message.len() < 2_000, "{} chars", message.len());
    assert!(
        message.contains(&format!("\"{}…\"", "x".repeat(100))),
        "{message}"
    );
    assert!(!message.contains(&"x".repeat(101)));
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

#[test]
fn given_a_rule_that_filters_every_tag_when_routing_a_repository_then_its_destinations_still_show()
{
    let config = load(json!({"rules": [
        {"match": {"prefix": "kuali-"}, "destinations": [dest("{suffix}")],
         "tags": {"include": ["release-*"], "untagged": false}}
    ]}));

    let route = config
        .route("kuali-coeus")
        .expect("the prefix rule takes the repository");

    assert_eq!(route.destinations[0].repository.as_deref(), Ok("coeus"));
    assert!(matches!(
        config.decide("kuali-coeus", None),
        Decision::TagFiltered { .. }
    ));
    assert!(config.route("other").is_none());
}

mod confine;
mod creation;
mod limits;
mod loops;
