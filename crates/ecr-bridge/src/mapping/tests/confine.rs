//! `confine_to`: a destination's rendered names stay under its prefix, or
//! that destination fails for the push (issue 13, point 5).

use serde_json::{json, Value};

use super::{assert_refused, load, A, B};
use crate::mapping::{Decision, InvalidTargetName, MappingConfig, Replication, TargetNameProblem};

fn confined(repository: &str, prefix: &str) -> Value {
    json!({ "account": A, "region": "us-east-1", "repository": repository, "confine_to": prefix })
}

fn replication(config: &MappingConfig, repository: &str) -> Replication {
    match config.decide(repository, Some("v1")) {
        Decision::Replicate(r) => r,
        other => panic!("expected a replication, got {other:?}"),
    }
}

/// One rule, `matcher` to a destination rendering `repository` confined to `prefix`.
fn confined_doc(matcher: Value, repository: &str, prefix: &str) -> Value {
    json!({ "rules": [ { "match": matcher, "destinations": [confined(repository, prefix)] } ] })
}

fn confined_rule(matcher: Value, repository: &str, prefix: &str) -> MappingConfig {
    load(confined_doc(matcher, repository, prefix))
}

/// What the rule taking `source` renders for its first destination.
fn first_target(config: &MappingConfig, source: &str) -> Result<String, InvalidTargetName> {
    replication(config, source).destinations[0]
        .repository
        .clone()
}

/// `confined_doc`, refused at its destination's `repository` with `text`.
fn assert_template_refused(matcher: Value, repository: &str, prefix: &str, text: &str) {
    assert_refused(
        confined_doc(matcher, repository, prefix),
        "rules[0].destinations[0].repository",
        text,
    );
}

/// The Kuali migration's prefix rule, confined to the names it is for.
fn kuali() -> MappingConfig {
    load(json!({ "rules": [
        { "name": "kuali", "match": { "prefix": "kuali-" },
          "destinations": [confined("{suffix}", "coeus")] },
    ]}))
}

#[test]
fn given_a_suffix_with_a_slash_rendering_outside_the_prefix_when_decided_then_that_destination_is_refused_naming_name_prefix_and_rule(
) {
    let config = kuali();

    let r = replication(&config, "kuali-nextflow-approved/jane-2edoe-40x-2eio");

    let err = r.destinations[0].repository.clone().unwrap_err();
    assert_eq!(err.rendered, "nextflow-approved/jane-2edoe-40x-2eio");
    assert_eq!(
        err.problem,
        TargetNameProblem::OutsideConfinement {
            confine_to: "coeus".to_string()
        }
    );
    assert_eq!(
        err.to_string(),
        "rule \"kuali\" destinations[0]: repository template \"{suffix}\" gave \
         \"nextflow-approved/jane-2edoe-40x-2eio\", outside the destination's confine_to \"coeus\" \
         (names must be \"coeus\", continue it without a \"/\", or be under \"coeus/\"), \
         so nothing is pushed there"
    );
    assert_eq!(r.invalid_targets().count(), 1);
}

#[test]
fn given_names_inside_the_prefix_when_decided_then_they_are_accepted() {
    let config = kuali();

    for (source, target) in [
        ("kuali-coeus", "coeus"),
        ("kuali-coeus-feature", "coeus-feature"),
        ("kuali-coeus/nightly", "coeus/nightly"),
    ] {
        let r = replication(&config, source);
        assert_eq!(r.destinations[0].repository, Ok(target.to_string()));
    }
}

#[test]
fn given_team_without_a_slash_when_a_value_opens_another_namespace_then_teamevil_is_outside() {
    let config = confined_rule(json!({ "regex": "src/(.+)" }), "{1}", "team");
    let verdict = |source| first_target(&config, source);

    assert_eq!(verdict("src/team/app"), Ok("team/app".to_string()));
    assert_eq!(verdict("src/team"), Ok("team".to_string()));
    assert_eq!(verdict("src/team-x"), Ok("team-x".to_string()));
    for outside in ["src/teamevil/x", "src/team-x/y", "src/other/team"] {
        assert!(
            matches!(
                verdict(outside),
                Err(e) if matches!(e.problem, TargetNameProblem::OutsideConfinement { .. })
            ),
            "{outside}"
        );
    }
}

#[test]
fn given_a_prefix_ending_in_a_slash_when_decided_then_only_names_under_it_pass() {
    let config = confined_rule(json!({ "prefix": "app-" }), "{suffix}", "team/");
    let verdict = |source| first_target(&config, source);

    assert_eq!(verdict("app-team/web"), Ok("team/web".to_string()));
    assert!(verdict("app-team").is_err());
    assert!(verdict("app-teamevil/x").is_err());
}

#[test]
fn given_one_destination_outside_when_decided_then_the_other_destinations_still_render() {
    let config = load(json!({ "rules": [
        { "match": { "prefix": "kuali-" }, "destinations": [
            confined("{suffix}", "coeus"),
            { "account": B, "region": "us-east-1", "repository": "archive/{suffix}", "confine_to": "archive/" },
        ] },
    ]}));

    let r = replication(&config, "kuali-nextflow-approved/jane");

    assert!(r.destinations[0].repository.is_err());
    assert_eq!(
        r.destinations[1].repository,
        Ok("archive/nextflow-approved/jane".to_string())
    );
}

#[test]
fn given_an_invalid_rendered_name_when_confined_then_the_name_problem_is_reported_first() {
    let config = confined_rule(json!({ "regex": "(.+)-x" }), "{1}", "team/");

    let err = first_target(&config, "Team/App-x").unwrap_err();
    assert_eq!(err.problem, TargetNameProblem::NotAnEcrName);
}

#[test]
fn given_bad_prefixes_when_loaded_then_each_is_refused_naming_the_field() {
    for (prefix, text) in [
        ("", "must not be empty"),
        ("/team", "must be the start of a valid ECR repository name"),
        ("Team/", "must be the start of a valid ECR repository name"),
        ("team//", "must be the start of a valid ECR repository name"),
        (
            "team/../x",
            "must be the start of a valid ECR repository name",
        ),
    ] {
        assert_refused(
            json!({ "rules": [ { "match": { "prefix": "a-" }, "destinations": [confined("{suffix}", prefix)] } ] }),
            "rules[0].destinations[0].confine_to",
            text,
        );
    }
    assert_refused(
        json!({ "rules": [ { "match": { "prefix": "a-" }, "destinations": [
            { "account": A, "region": "us-east-1", "confine_to": 7 } ] } ] }),
        "rules[0].destinations[0].confine_to",
        "expected a string",
    );
}

#[test]
fn given_a_literal_target_outside_its_own_prefix_when_loaded_then_refused() {
    let err = assert_refused(
        json!({ "rules": [ { "name": "pinned", "match": { "prefix": "kuali-" },
            "destinations": [confined("nextflow-approved/jane", "coeus")] } ] }),
        "rules[0].destinations[0].repository",
        "always renders \"nextflow-approved/jane\", outside confine_to \"coeus\"",
    );
    assert!(
        err.to_string().contains("could never receive an image"),
        "{err}"
    );
    // An exact match fixes {repository} as well.
    assert_template_refused(
        json!({ "exact": "teamevil" }),
        "{repository}/x",
        "team",
        "always renders \"teamevil/x\"",
    );
}

#[test]
fn given_a_template_whose_fixed_start_leaves_the_prefix_when_loaded_then_refused() {
    assert_template_refused(
        json!({ "prefix": "app-" }),
        "mirror/{suffix}",
        "team/",
        "every name it renders starts with \"mirror/\", outside confine_to \"team/\"",
    );
    // {repository} of a prefix rule starts with the prefix.
    assert_template_refused(
        json!({ "prefix": "app-" }),
        "{repository}",
        "team/",
        "starts with \"app-\"",
    );
}

#[test]
fn given_templates_that_can_render_inside_when_loaded_then_accepted() {
    let config = load(json!({ "rules": [
        { "match": { "exact": "kuali-coeus" }, "destinations": [confined("coeus", "coeus")] },
        { "match": { "prefix": "team-" }, "destinations": [
            confined("team/{suffix}", "team/"),
            { "account": B, "region": "us-east-1", "repository": "{repository}", "confine_to": "team-" },
            { "account": B, "region": "us-east-1", "repository": "t{suffix}", "confine_to": "team/" },
        ] },
    ]}));

    assert_eq!(
        config.rules()[0].destinations()[0].confine_to(),
        Some("coeus")
    );
    assert_eq!(
        config.rules()[1].destinations()[0].confine_to(),
        Some("team/")
    );
}
