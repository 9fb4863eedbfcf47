//! Tag filters: include, exclude, untagged, and routing whatever the tag.

use super::*;

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
