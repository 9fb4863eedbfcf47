//! Match kinds (exact, prefix, regex) and rule order: the first rule
//! whose `match` takes a name decides.

use super::*;

#[test]
fn given_templates_using_the_match_variables_when_matched_then_each_renders() {
    for (rule, source, tag, expected) in [
        // A prefix rule's {suffix} and {repository}.
        (
            json!({ "match": { "prefix": "gen3/" },
              "destinations": [dest("mirror/{suffix}"), dest("all/{repository}")] }),
            "gen3/fence",
            "1.0",
            ["mirror/fence", "all/gen3/fence"],
        ),
        // A regex rule's named and numbered groups.
        (
            json!({ "match": { "regex": "team-(?P<team>[a-z0-9]+)/(.+)" },
              "destinations": [dest("mirror/{team}/{2}"), dest("by-number/{1}/{2}")] }),
            "team-ml/trainer/gpu",
            "v1",
            ["mirror/ml/trainer/gpu", "by-number/ml/trainer/gpu"],
        ),
    ] {
        let config = load(json!({ "rules": [rule] }));
        assert_eq!(
            targets(&config.decide(source, Some(tag))),
            expected,
            "{source}"
        );
    }
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
