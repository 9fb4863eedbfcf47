//! `explain`: every rule's verdict for a push, agreeing with `decide`, and
//! the plan's JSON.

use super::*;

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
