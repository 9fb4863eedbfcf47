//! Invalid configs, one problem each: every field's check names its path.

use super::*;

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
    for (destination, text) in [
        (
            json!({ "account": "12345678901x", "region": "us-east-1" }),
            "must be 12 digits",
        ),
        (
            json!({ "account": 222222222222u64, "region": "us-east-1" }),
            "invalid type: integer 222222222222, expected a string",
        ),
        (json!({ "region": "us-east-1" }), "missing required field"),
    ] {
        assert_refused(
            with_destination(destination),
            "rules[0].destinations[0].account",
            text,
        );
    }
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
        "role is in account 111111111111 but the registry's account is 222222222222",
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
    assert_rule_refused(
        json!({ "exact": "app1", "prefix": "app" }),
        "x1",
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
        "unknown field (expected one of: version, source, sources, rules)",
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
    for (repository, text) in [
        (
            "x/{name}",
            "unknown template variable {name} (available: {repository})",
        ),
        ("x/{repository", "unbalanced braces"),
    ] {
        assert_rule_refused(
            json!({ "exact": "app1" }),
            repository,
            "rules[0].destinations[0].repository",
            text,
        );
    }
}

#[test]
fn given_group_number_beyond_the_regex_groups_when_loaded_then_it_is_refused() {
    assert_rule_refused(
        json!({ "regex": "(a+)-(b+)" }),
        "{3}",
        "rules[0].destinations[0].repository",
        "unknown template variable {3} (available: {repository}, {1}, {2})",
    );
}

#[test]
fn given_invalid_or_oversized_regex_when_loaded_then_it_is_refused() {
    for (regex, text) in [
        ("team-(".to_string(), "invalid regex"),
        ("a".repeat(MAX_REGEX_LEN + 1), "longer than 1000 characters"),
        // Short but huge once compiled: the size limit catches it.
        ("(\\w{100}){100}".to_string(), "invalid regex"),
        ("(?P<suffix>.+)".to_string(), "reserved"),
    ] {
        assert_rule_refused(
            json!({ "regex": regex }),
            "x1",
            "rules[0].match.regex",
            text,
        );
    }
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
    for (earlier, text) in [
        (
            json!({ "name": "all-kuali", "match": { "prefix": "kuali-" }, "destinations": [dest("{suffix}")] }),
            "unreachable: every name it matches is matched first by rules[0] (all-kuali)",
        ),
        (
            json!({ "match": { "regex": "kuali-.*" }, "destinations": [dest("x1")] }),
            "unreachable",
        ),
    ] {
        let later = json!({ "match": { "exact": "kuali-coeus" }, "destinations": [dest("coeus")] });
        assert_refused(json!({ "rules": [earlier, later] }), "rules[1].match", text);
    }
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
    for (create, path, text) in [
        (
            json!({ "tag_mutability": "immutable" }),
            "rules[0].create_repository.tag_mutability",
            "must be one of \"MUTABLE\", \"IMMUTABLE\", \"IMMUTABLE_WITH_EXCLUSION\", \"MUTABLE_WITH_EXCLUSION\" (got \"immutable\")",
        ),
        (
            json!({ "encryption": { "type": "AES256", "kms_key": "alias/x" } }),
            "rules[0].create_repository.encryption.kms_key",
            "only allowed with \"type\": \"KMS\"",
        ),
        (
            json!({ "encryption": { "type": "DSSE" } }),
            "rules[0].create_repository.encryption.type",
            "must be one of",
        ),
        (
            json!("yes"),
            "rules[0].create_repository",
            "must be one of true, false, \"registry\" or an object of settings (got \"yes\")",
        ),
        (
            json!({ "scan_on_push": "true" }),
            "rules[0].create_repository.scan_on_push",
            "expected a boolean",
        ),
    ] {
        assert_refused(with(create), path, text);
    }
}

#[test]
fn given_invalid_match_values_when_loaded_then_they_are_refused() {
    for (kind, value, text) in [
        ("exact", "Kuali-Coeus", "not a valid ECR repository name"),
        ("prefix", "", "must not be empty"),
        ("prefix", "Team-", "lowercase"),
    ] {
        assert_rule_refused(
            json!({ kind: value }),
            "x1",
            &format!("rules[0].match.{kind}"),
            text,
        );
    }
}
