//! `decide_image`: an image and all its tags at once, as the replicator,
//! plan and backfill ask; it agrees with `decide` tag by tag.

use super::*;

fn filtered_rule() -> MappingConfig {
    load(json!({ "rules": [
        { "name": "kuali", "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")],
          "tags": { "include": ["v*"], "exclude": ["*-dirty"], "untagged": false } },
    ]}))
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

#[test]
fn given_some_tags_passing_the_filter_when_an_image_is_decided_then_only_those_replicate_in_order()
{
    let config = filtered_rule();

    let decision = config.decide_image("kuali-coeus", &tags(&["latest", "v2", "v1-dirty", "v1"]));

    let ImageDecision::Replicate { replication, tags } = decision else {
        panic!("expected a replication, got {decision:?}");
    };
    assert_eq!(tags, ["v2", "v1"]);
    assert_eq!(replication.rule, "kuali");
    assert_eq!(
        replication.destinations[0].repository.as_deref(),
        Ok("coeus")
    );
}

#[test]
fn given_no_tag_passing_when_an_image_is_decided_then_the_first_refusal_says_why() {
    let config = filtered_rule();

    let decision = config.decide_image("kuali-coeus", &tags(&["latest", "v1-dirty"]));

    match decision {
        ImageDecision::TagFiltered {
            rule,
            rule_index,
            reason,
        } => {
            assert_eq!((rule.as_str(), rule_index), ("kuali", 0));
            assert!(
                matches!(&reason, TagFilterReason::NotIncluded { tag, .. } if tag == "latest"),
                "{reason:?}"
            );
        }
        other => panic!("expected TagFiltered, got {other:?}"),
    }
}

#[test]
fn given_an_untagged_image_when_decided_then_the_rules_untagged_setting_decides() {
    let off = filtered_rule();
    let on = load(
        json!({ "rules": [ { "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")] } ] }),
    );

    assert!(matches!(
        off.decide_image("kuali-coeus", &[]),
        ImageDecision::TagFiltered {
            reason: TagFilterReason::UntaggedOff,
            ..
        }
    ));
    assert!(matches!(
        on.decide_image("kuali-coeus", &[]),
        ImageDecision::Replicate { ref tags, .. } if tags.is_empty()
    ));
    assert_eq!(
        off.decide_image("other", &tags(&["v1"])),
        ImageDecision::NoMatchingRule
    );
}

#[test]
fn given_any_image_when_decided_then_it_agrees_with_decide_tag_by_tag() {
    let config = filtered_rule();
    for list in [
        vec![],
        vec!["v1"],
        vec!["latest"],
        vec!["v1", "latest", "v2-dirty", "v3"],
    ] {
        for repository in ["kuali-coeus", "other"] {
            let image = tags(&list);
            let per_tag: Vec<Decision> = if image.is_empty() {
                vec![config.decide(repository, None)]
            } else {
                image
                    .iter()
                    .map(|t| config.decide(repository, Some(t)))
                    .collect()
            };
            let replicated: Vec<String> = image
                .iter()
                .zip(&per_tag)
                .filter(|(_, d)| matches!(d, Decision::Replicate(_)))
                .map(|(t, _)| t.clone())
                .collect();
            let first_replication = per_tag.iter().find_map(|d| match d {
                Decision::Replicate(r) => Some(r.clone()),
                _ => None,
            });
            let expected = match (&per_tag[0], first_replication) {
                (Decision::NoMatchingRule, _) => ImageDecision::NoMatchingRule,
                (_, Some(replication)) => ImageDecision::Replicate {
                    replication,
                    tags: replicated,
                },
                (_, None) => match per_tag
                    .iter()
                    .find(|d| matches!(d, Decision::TagFiltered { .. }))
                {
                    Some(Decision::TagFiltered {
                        rule,
                        rule_index,
                        reason,
                    }) => ImageDecision::TagFiltered {
                        rule: rule.clone(),
                        rule_index: *rule_index,
                        reason: reason.clone(),
                    },
                    _ => unreachable!(),
                },
            };
            assert_eq!(
                config.decide_image(repository, &image),
                expected,
                "{repository} {list:?}"
            );
        }
    }
}
