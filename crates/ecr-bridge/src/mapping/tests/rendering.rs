//! Per-event errors: a target name that renders invalid fails only its
//! destination, naming the rule.

use super::*;

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
