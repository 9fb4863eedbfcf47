//! Invalid configs with many problems: all reported, the message bounded,
//! hostile values quoted short.

use super::*;

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
