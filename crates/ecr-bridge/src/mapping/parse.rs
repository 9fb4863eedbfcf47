//! From JSON text to a validated [`MappingConfig`].
//!
//! The document is first read into a small order-keeping tree
//! ([`super::tree`]) and then walked by hand rather than through
//! `#[derive(Deserialize)]`: serde stops at the first wrong type or unknown
//! field, while a person fixing a config wants every problem at once.

use std::collections::HashSet;
use std::str::FromStr;

use super::confine;
use super::error::{ConfigError, Problem};
use super::glob::Glob;
use super::quote::shown;
use super::schema::{Destination, NameRegex, RepositoryMatch, Rule, SourceRegistry, TagFilter};
use super::settings::create_repository;
use super::template::{Scope, Template, SAME_NAME};
use super::tree::{
    all_items, as_array, as_string, at_most, check_length, child, item, non_empty_array, Errors,
    Json, Object, ROOT,
};
use super::{
    MappingConfig, MAX_DESTINATIONS, MAX_DOCUMENT_BYTES, MAX_GLOBS, MAX_NAME_LEN, MAX_REGEX_LEN,
    MAX_RULES, MAX_SOURCES, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT,
};
use crate::ids::{AccountId, AssumeRole, ExternalId, Region, RegistryAccess, RoleArn};
use crate::reference::is_valid_ecr_repository_name;

const TOP_FIELDS: &[&str] = &["version", "source", "sources", "rules"];
const SOURCE_FIELDS: &[&str] = &["account", "region", "role_arn", "external_id"];
const RULE_FIELDS: &[&str] = &[
    "name",
    "match",
    "destinations",
    "tags",
    "create_repository",
    "propagate_deletes",
    "copy_referrers",
];
const MATCH_FIELDS: &[&str] = &["exact", "prefix", "regex"];
const DESTINATION_FIELDS: &[&str] = &[
    "account",
    "region",
    "role_arn",
    "external_id",
    "repository",
    "confine_to",
];
const TAGS_FIELDS: &[&str] = &["include", "exclude", "untagged"];

pub(super) fn parse(text: &str) -> Result<MappingConfig, ConfigError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(ConfigError::TooLarge {
            size: text.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let tree: Json = serde_json::from_str(text).map_err(|e| {
        // serde_json puts the position at the end of its message; keep it once, as fields.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        ConfigError::Syntax {
            message: full.strip_suffix(&suffix).unwrap_or(&full).to_string(),
            line: e.line(),
            column: e.column(),
        }
    })?;
    let mut errors = Errors::default();
    let parsed = document(&tree, &mut errors);
    match parsed {
        Some((rules, sources)) if errors.0.is_empty() => Ok(MappingConfig { rules, sources }),
        _ => Err(ConfigError::Invalid(errors.0)),
    }
}

fn document(tree: &Json, errors: &mut Errors) -> Option<(Vec<Rule>, Vec<SourceRegistry>)> {
    let top = Object::new(tree, ROOT, TOP_FIELDS, errors)?;
    let sources = source_registries(&top, errors);
    match top.get("version") {
        None | Some(Json::Integer(1)) => {}
        Some(Json::Integer(n)) => errors.add(
            &top.path("version"),
            Problem::UnsupportedVersion {
                found: n.to_string(),
            },
        ),
        Some(other) => errors.wrong_type(&top.path("version"), other, "the integer 1"),
    }
    let rules_path = top.path("rules");
    let items = as_array(top.required("rules", errors)?, &rules_path, errors)?;
    if !at_most(items, MAX_RULES, &rules_path, errors) {
        // Don't compile hundreds of regexes only to refuse the document.
        return None;
    }
    let parsed: Vec<Option<Rule>> = items
        .iter()
        .enumerate()
        .map(|(i, v)| rule(v, i, &item(&rules_path, i), errors))
        .collect();
    let rules: Vec<Rule> = parsed.into_iter().collect::<Option<_>>()?;
    check_across_rules(&rules, &rules_path, errors);
    for rule in &rules {
        for (i, problem) in confine::never_inside(rule) {
            let destination = item(&child(&item(&rules_path, rule.index), "destinations"), i);
            errors.add(&child(&destination, "repository"), problem);
        }
    }
    let sources = sources?;
    let mut reported = HashSet::new();
    for source in &sources {
        for found in super::loops::find(&rules, source) {
            // Two sources in one registry find the same loop once.
            if !reported.insert((found.rule_index, found.destination_index)) {
                continue;
            }
            let rule_path = item(&rules_path, found.rule_index);
            let path = item(&child(&rule_path, "destinations"), found.destination_index);
            errors.add(&path, found.problem);
        }
    }
    Some((rules, sources))
}

/// `source` (one registry) or `sources` (a list, for a hub that takes the
/// events of several accounts): where the events come from.
fn source_registries(top: &Object<'_>, errors: &mut Errors) -> Option<Vec<SourceRegistry>> {
    match (top.get("source"), top.get("sources")) {
        (None, None) => Some(Vec::new()),
        (Some(_), Some(_)) => {
            errors.add(&top.path("sources"), Problem::SourceAndSources);
            None
        }
        (Some(v), None) => source_registry(v, &top.path("source"), errors).map(|s| vec![s]),
        (None, Some(v)) => {
            let path = top.path("sources");
            let items = non_empty_array(v, &path, errors)?;
            if !at_most(items, MAX_SOURCES, &path, errors) {
                return None;
            }
            let parsed: Vec<Option<SourceRegistry>> = items
                .iter()
                .enumerate()
                .map(|(i, v)| source_registry(v, &item(&path, i), errors))
                .collect();
            let sources: Vec<SourceRegistry> = parsed.into_iter().collect::<Option<_>>()?;
            for (j, later) in sources.iter().enumerate() {
                if let Some(other) = sources[..j]
                    .iter()
                    .position(|s| s.account == later.account && s.region == later.region)
                {
                    errors.add(&item(&path, j), Problem::DuplicateSource { other });
                }
            }
            Some(sources)
        }
    }
}

/// `{"account": "...", "region": "...", "role_arn": "...", "external_id": "..."}`.
fn source_registry(value: &Json, path: &str, errors: &mut Errors) -> Option<SourceRegistry> {
    let obj = Object::new(value, path, SOURCE_FIELDS, errors)?;
    let account = account_field(&obj, errors);
    let region = region_field(&obj, errors);
    let assume = assume_role_fields(&obj, account.as_ref(), errors);
    Some(SourceRegistry {
        account: account?,
        region: region?,
        assume: assume?,
    })
}

/// `role_arn` and `external_id` of an entry for `account`: the role must
/// be in that account, and an ExternalId needs a role. `Some(None)`: no role.
fn assume_role_fields(
    obj: &Object<'_>,
    account: Option<&AccountId>,
    errors: &mut Errors,
) -> Option<Option<AssumeRole>> {
    let role_arn = match obj.string("role_arn", errors) {
        None => Some(None),
        Some(arn) => match arn.parse::<RoleArn>() {
            Err(_) => {
                errors.add(&obj.path("role_arn"), Problem::RoleArn { got: shown(arn) });
                None
            }
            // A role in another account than the registry's is almost
            // always a copy-paste slip.
            Ok(role) => match account {
                Some(account) if role.account() != account => {
                    errors.add(
                        &obj.path("role_arn"),
                        Problem::RoleAccount {
                            role_account: role.account().to_string(),
                            account: account.to_string(),
                        },
                    );
                    None
                }
                _ => Some(Some(role)),
            },
        },
    };
    let external_id = match obj.string("external_id", errors) {
        None => Some(None),
        Some(id) => match id.parse::<ExternalId>() {
            Err(_) => {
                errors.add(
                    &obj.path("external_id"),
                    Problem::ExternalId { got: shown(id) },
                );
                None
            }
            Ok(_) if !obj.has("role_arn") => {
                errors.add(&obj.path("external_id"), Problem::ExternalIdWithoutRole);
                None
            }
            Ok(id) => Some(Some(id)),
        },
    };
    let (role_arn, external_id) = (role_arn?, external_id?);
    Some(role_arn.map(|role_arn| AssumeRole {
        role_arn,
        external_id,
    }))
}

fn account_field(obj: &Object<'_>, errors: &mut Errors) -> Option<AccountId> {
    parsed_field(obj, "account", |got| Problem::Account { got }, errors)
}

fn region_field(obj: &Object<'_>, errors: &mut Errors) -> Option<Region> {
    parsed_field(obj, "region", |got| Problem::Region { got }, errors)
}

/// A required string field read as `T`; `problem` is given the text shown when it is not one.
fn parsed_field<T: FromStr>(
    obj: &Object<'_>,
    key: &str,
    problem: fn(String) -> Problem,
    errors: &mut Errors,
) -> Option<T> {
    let text = obj.required_string(key, errors)?;
    let parsed = text.parse::<T>().ok();
    if parsed.is_none() {
        errors.add(&obj.path(key), problem(shown(text)));
    }
    parsed
}

/// Mistakes only visible across rules: a reused name, a rule that can never win.
fn check_across_rules(rules: &[Rule], rules_path: &str, errors: &mut Errors) {
    for (j, later) in rules.iter().enumerate() {
        let path = item(rules_path, j);
        if let Some(earlier) = rules[..j].iter().find(|r| r.name == later.name) {
            errors.add(
                &child(&path, "name"),
                Problem::DuplicateRuleName {
                    other: earlier.index,
                },
            );
        }
        if let Some(earlier) = rules[..j].iter().find(|r| r.matcher.covers(&later.matcher)) {
            errors.add(
                &child(&path, "match"),
                Problem::Unreachable {
                    earlier: earlier.label(),
                },
            );
        }
    }
}

fn rule(value: &Json, index: usize, path: &str, errors: &mut Errors) -> Option<Rule> {
    let obj = Object::new(value, path, RULE_FIELDS, errors)?;
    let name = match obj.string("name", errors) {
        Some(n) if check_length(n, MAX_NAME_LEN, &obj.path("name"), errors) => n.to_string(),
        // Already reported: the document fails, the value is never seen.
        Some(_) => String::new(),
        None => format!("rules[{index}]"),
    };
    let matcher = obj
        .required("match", errors)
        .and_then(|v| repository_match(v, &obj.path("match"), errors));
    // Templates can only be checked against a valid match; without one,
    // their errors would be guesses.
    let scope = matcher.as_ref().map(RepositoryMatch::scope);
    let destinations = obj
        .required("destinations", errors)
        .and_then(|v| destinations(v, &obj.path("destinations"), scope.as_ref(), errors));
    let tags = match obj.get("tags") {
        None => Some(TagFilter::default()),
        Some(v) => tag_filter(v, &obj.path("tags"), errors),
    };
    let registry_creates_repository =
        matches!(obj.get("create_repository"), Some(Json::String(s)) if s == "registry");
    let create_repository = match obj.get("create_repository") {
        None => Some(None),
        Some(_) if registry_creates_repository => Some(None),
        Some(v) => create_repository(v, &obj.path("create_repository"), errors),
    };
    let propagate_deletes = obj.boolean("propagate_deletes", false, errors);
    let copy_referrers = obj.boolean("copy_referrers", false, errors);
    Some(Rule {
        name,
        index,
        matcher: matcher?,
        destinations: destinations?,
        tags: tags?,
        create_repository: create_repository?,
        registry_creates_repository,
        propagate_deletes,
        copy_referrers,
    })
}

fn repository_match(value: &Json, path: &str, errors: &mut Errors) -> Option<RepositoryMatch> {
    let obj = Object::new(value, path, MATCH_FIELDS, errors)?;
    let given: Vec<&'static str> = MATCH_FIELDS
        .iter()
        .copied()
        .filter(|k| obj.has(k))
        .collect();
    if given.len() != 1 {
        errors.add(path, Problem::MatchKind { given });
        return None;
    }
    let kind = given[0];
    let field_path = obj.path(kind);
    let text = obj.string(kind, errors)?;
    match kind {
        "exact" => {
            if !is_valid_ecr_repository_name(text) {
                errors.add(&field_path, Problem::ExactName { got: shown(text) });
                return None;
            }
            Some(RepositoryMatch::Exact(text.to_string()))
        }
        "prefix" => {
            if !check_length(text, MAX_NAME_LEN, &field_path, errors) {
                return None;
            }
            let name_char = |b: u8| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/')
            };
            let first = text.as_bytes()[0];
            if !(text.bytes().all(name_char)
                && (first.is_ascii_lowercase() || first.is_ascii_digit()))
            {
                errors.add(&field_path, Problem::Prefix { got: shown(text) });
                return None;
            }
            Some(RepositoryMatch::Prefix(text.to_string()))
        }
        _ => name_regex(text, &field_path, errors).map(RepositoryMatch::Regex),
    }
}

fn name_regex(pattern: &str, path: &str, errors: &mut Errors) -> Option<NameRegex> {
    if !check_length(pattern, MAX_REGEX_LEN, path, errors) {
        return None;
    }
    // Wrapped, not trusted to carry its own anchors: `foo|bar` must not match `xfoo`.
    let anchored = regex_lite::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build();
    let anchored = match anchored {
        Ok(r) => r,
        Err(e) => {
            let message = e.to_string();
            let first_line = message.lines().next().unwrap_or("");
            errors.add(
                path,
                Problem::Regex {
                    message: super::quote::truncated(first_line),
                },
            );
            return None;
        }
    };
    let mut names = Vec::new();
    for (i, name) in anchored.capture_names().enumerate() {
        let Some(name) = name else { continue };
        if matches!(name, "repository" | "suffix") {
            errors.add(
                path,
                Problem::ReservedGroupName {
                    name: name.to_string(),
                },
            );
            return None;
        }
        names.push((name.to_string(), i));
    }
    Some(NameRegex {
        pattern: pattern.to_string(),
        groups: anchored.captures_len() - 1,
        anchored,
        names,
    })
}

fn destinations(
    value: &Json,
    path: &str,
    scope: Option<&Scope>,
    errors: &mut Errors,
) -> Option<Vec<Destination>> {
    let items = non_empty_array(value, path, errors)?;
    // Too many is refused, but each is still read so its own problems show too.
    at_most(items, MAX_DESTINATIONS, path, errors);
    all_items(items, path, errors, |v, item_path, earlier, errors| {
        let d = destination(v, item_path, scope, errors)?;
        // Two identical targets would copy every image twice to one place.
        let same = earlier.iter().position(|o: &Destination| {
            o.access.account == d.access.account
                && o.access.region == d.access.region
                && o.repository.as_str() == d.repository.as_str()
        });
        if let Some(other) = same {
            errors.add(item_path, Problem::DuplicateDestination { other });
        }
        Some(d)
    })
}

fn destination(
    value: &Json,
    path: &str,
    scope: Option<&Scope>,
    errors: &mut Errors,
) -> Option<Destination> {
    let obj = Object::new(value, path, DESTINATION_FIELDS, errors)?;
    let account = account_field(&obj, errors);
    let region = region_field(&obj, errors);
    let assume = assume_role_fields(&obj, account.as_ref(), errors);
    let repository_path = obj.path("repository");
    let template_text = match obj.get("repository") {
        None => Some(SAME_NAME),
        Some(v) => as_string(v, &repository_path, errors),
    };
    let repository = match (template_text, scope) {
        (Some(text), Some(scope)) => match Template::parse(text, scope) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.add(&repository_path, e);
                None
            }
        },
        _ => None,
    };
    let confine_to = match obj.string("confine_to", errors) {
        None => Some(None),
        Some("") => {
            errors.add(&obj.path("confine_to"), Problem::Empty);
            None
        }
        Some(p) if !confine::is_valid_prefix(p) => {
            errors.add(
                &obj.path("confine_to"),
                Problem::ConfinePrefix { got: shown(p) },
            );
            None
        }
        Some(p) => Some(Some(p.to_string())),
    };
    Some(Destination {
        access: RegistryAccess {
            account: account?,
            region: region?,
            assume: assume?,
        },
        repository: repository?,
        confine_to: confine_to?,
    })
}

fn tag_filter(value: &Json, path: &str, errors: &mut Errors) -> Option<TagFilter> {
    let obj = Object::new(value, path, TAGS_FIELDS, errors)?;
    let include = globs(&obj, "include", errors);
    let exclude = globs(&obj, "exclude", errors);
    let untagged = obj.boolean("untagged", true, errors);
    Some(TagFilter {
        include: include?,
        exclude: exclude?,
        untagged,
    })
}

fn globs(obj: &Object<'_>, key: &str, errors: &mut Errors) -> Option<Vec<Glob>> {
    let Some(value) = obj.get(key) else {
        return Some(Vec::new());
    };
    let path = obj.path(key);
    let items = as_array(value, &path, errors)?;
    if !at_most(items, MAX_GLOBS, &path, errors) {
        return None;
    }
    all_items(items, &path, errors, |v, item_path, _, errors| {
        let pattern = as_string(v, item_path, errors)?;
        match Glob::new(pattern) {
            Ok(g) => Some(g),
            Err(reason) => {
                errors.add(
                    item_path,
                    Problem::Glob {
                        got: shown(pattern),
                        reason,
                    },
                );
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_duplicate_keys_when_parsed_then_the_repeat_is_reported() {
        let err = parse(r#"{"rules": [], "rules": []}"#).unwrap_err();
        assert_eq!(err.to_string(), "rules: field given more than once");
    }
}
