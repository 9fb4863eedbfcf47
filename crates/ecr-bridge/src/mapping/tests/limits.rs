//! ECR's name limits as the mapping applies them: 2-256 characters.

use serde_json::json;

use super::{assert_refused, dest, load};
use crate::mapping::Decision;

#[test]
fn given_a_one_character_exact_match_when_loaded_then_it_is_refused_as_no_ecr_name() {
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "a" }, "destinations": [dest("coeus")] } ] }),
        "rules[0].match.exact",
        "not a valid ECR repository name",
    );
}

#[test]
fn given_a_one_character_static_target_when_loaded_then_it_is_refused() {
    assert_refused(
        json!({ "rules": [ { "match": { "exact": "kuali-coeus" }, "destinations": [dest("c")] } ] }),
        "rules[0].destinations[0].repository",
        "\"c\" is not a valid ECR repository name",
    );
}

#[test]
fn given_rendered_names_of_1_256_and_257_characters_when_decided_then_only_256_is_a_valid_target() {
    let config = load(json!({ "rules": [
        { "name": "kuali", "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")] },
    ]}));
    let rendered = |suffix: &str| match config.decide(&format!("kuali-{suffix}"), None) {
        Decision::Replicate(r) => r.destinations[0].repository.clone(),
        other => panic!("{other:?}"),
    };
    let one = rendered("x").unwrap_err();
    assert_eq!(one.rendered, "x");
    assert!(one.to_string().contains("not a valid ECR repository name"));
    assert_eq!(rendered(&"a".repeat(256)), Ok("a".repeat(256)));
    assert!(rendered(&"a".repeat(257)).is_err());
}
