//! From JSON text to a validated [`MappingConfig`].
//!
//! The document is first read into a small order-keeping tree and then
//! walked by hand rather than through `#[derive(Deserialize)]`: serde stops
//! at the first wrong type or unknown field, while a person fixing a config
//! wants every problem at once. The tree also keeps duplicate keys, which a
//! map would silently collapse.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{ConfigError, FieldError, Problem};
use super::glob::Glob;
use super::schema::{
    Destination, Encryption, NameRegex, RepositoryMatch, RepositorySettings, Rule, SourceRegistry,
    TagFilter, TagMutability,
};
use super::template::{Scope, Template, SAME_NAME};
use super::{
    shown, MappingConfig, MAX_DESTINATIONS, MAX_DOCUMENT_BYTES, MAX_GLOBS, MAX_NAME_LEN,
    MAX_REGEX_LEN, MAX_RULES, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT,
};
use crate::reference::is_valid_ecr_repository_name;

const TOP_FIELDS: &[&str] = &["version", "source", "rules"];
const SOURCE_FIELDS: &[&str] = &["account", "region"];
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
const DESTINATION_FIELDS: &[&str] = &["account", "region", "role_arn", "external_id", "repository"];
const TAGS_FIELDS: &[&str] = &["include", "exclude", "untagged"];
const CREATE_FIELDS: &[&str] = &[
    "tag_mutability",
    "tag_mutability_exclusions",
    "scan_on_push",
    "encryption",
];
/// More filters than this is a mistake, not a repository setting.
const MAX_EXCLUSIONS: usize = 100;
const ENCRYPTION_FIELDS: &[&str] = &["type", "kms_key"];
const ROOT: &str = "(document)";

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
        Some((rules, source)) if errors.0.is_empty() => Ok(MappingConfig { rules, source }),
        _ => Err(ConfigError::Invalid(errors.0)),
    }
}

// ---- the JSON tree -------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Integer(i128),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    /// In document order, duplicates kept.
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Integer(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Integer(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            entries.push((k, v));
        }
        Ok(Json::Object(entries))
    }
}

impl Json {
    /// serde's wording, so messages read like serde_json's own.
    fn describe(&self) -> String {
        match self {
            Json::Null => "null".to_string(),
            Json::Bool(b) => format!("boolean {b}"),
            Json::Integer(i) => format!("integer {i}"),
            Json::Float(x) => format!("floating point {x}"),
            Json::String(s) => format!("string {}", shown(s)),
            Json::Array(_) => "array".to_string(),
            Json::Object(_) => "object".to_string(),
        }
    }
}

// ---- walking helpers -----------------------------------------------------

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: &str, problem: impl Into<Problem>) {
        self.0.push(FieldError {
            path: path.to_string(),
            problem: problem.into(),
        });
    }

    fn wrong_type(&mut self, path: &str, found: &Json, expected: &'static str) {
        self.add(
            path,
            Problem::InvalidType {
                found: found.describe(),
                expected,
            },
        );
    }
}

/// `rules[0]` + `match` -> `rules[0].match`; odd keys are quoted so a path stays unambiguous.
fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 100
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let key = if plain { key.to_string() } else { shown(key) };
    match (parent == ROOT, plain) {
        (true, _) => key,
        (false, true) => format!("{parent}.{key}"),
        (false, false) => format!("{parent}[{key}]"),
    }
}

fn item(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// An object whose unknown and repeated keys have been reported.
struct Object<'a> {
    path: String,
    fields: Vec<(&'a str, &'a Json)>,
}

impl<'a> Object<'a> {
    fn new(
        value: &'a Json,
        path: &str,
        known: &'static [&'static str],
        errors: &mut Errors,
    ) -> Option<Object<'a>> {
        let Json::Object(entries) = value else {
            errors.wrong_type(path, value, "an object");
            return None;
        };
        let mut fields: Vec<(&str, &Json)> = Vec::new();
        for (key, v) in entries {
            let key_path = child(path, key);
            if !known.contains(&key.as_str()) {
                errors.add(&key_path, Problem::UnknownField { expected: known });
            } else if fields.iter().any(|(k, _)| k == key) {
                errors.add(&key_path, Problem::DuplicateField);
            } else {
                fields.push((key, v));
            }
        }
        Some(Object {
            path: path.to_string(),
            fields,
        })
    }

    fn path(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// Present and not `null`: an explicit `null` reads as "not set".
    fn get(&self, key: &str) -> Option<&'a Json> {
        self.fields
            .iter()
            .find(|(k, v)| *k == key && !matches!(v, Json::Null))
            .map(|(_, v)| *v)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn required(&self, key: &str, errors: &mut Errors) -> Option<&'a Json> {
        let v = self.get(key);
        if v.is_none() {
            errors.add(&self.path(key), Problem::MissingField);
        }
        v
    }

    fn string(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        self.get(key)
            .and_then(|v| as_string(v, &self.path(key), errors))
    }

    fn required_string(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        self.required(key, errors)
            .and_then(|v| as_string(v, &self.path(key), errors))
    }

    fn boolean(&self, key: &str, default: bool, errors: &mut Errors) -> bool {
        match self.get(key) {
            None => default,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                errors.wrong_type(&self.path(key), other, "a boolean");
                default
            }
        }
    }
}

fn as_string<'a>(value: &'a Json, path: &str, errors: &mut Errors) -> Option<&'a str> {
    match value {
        Json::String(s) => Some(s),
        other => {
            errors.wrong_type(path, other, "a string");
            None
        }
    }
}

fn as_array<'a>(value: &'a Json, path: &str, errors: &mut Errors) -> Option<&'a [Json]> {
    match value {
        Json::Array(items) => Some(items),
        other => {
            errors.wrong_type(path, other, "an array");
            None
        }
    }
}

fn check_length(value: &str, max: usize, path: &str, errors: &mut Errors) -> bool {
    if value.is_empty() {
        errors.add(path, Problem::Empty);
        false
    } else if value.chars().count() > max {
        errors.add(path, Problem::TooLong { max });
        false
    } else {
        true
    }
}

// ---- the schema ----------------------------------------------------------

fn document(tree: &Json, errors: &mut Errors) -> Option<(Vec<Rule>, Option<SourceRegistry>)> {
    let top = Object::new(tree, ROOT, TOP_FIELDS, errors)?;
    let source = match top.get("source") {
        None => Some(None),
        Some(v) => source_registry(v, &top.path("source"), errors).map(Some),
    };
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
    if items.len() > MAX_RULES {
        // Don't compile hundreds of regexes only to refuse the document.
        errors.add(
            &rules_path,
            Problem::TooMany {
                max: MAX_RULES,
                found: items.len(),
            },
        );
        return None;
    }
    let parsed: Vec<Option<Rule>> = items
        .iter()
        .enumerate()
        .map(|(i, v)| rule(v, i, &item(&rules_path, i), errors))
        .collect();
    let rules: Vec<Rule> = parsed.into_iter().collect::<Option<_>>()?;
    check_across_rules(&rules, &rules_path, errors);
    let source = source?;
    if let Some(source) = &source {
        for found in super::loops::find(&rules, source) {
            let rule_path = item(&rules_path, found.rule_index);
            let path = item(&child(&rule_path, "destinations"), found.destination_index);
            errors.add(&path, found.problem);
        }
    }
    Some((rules, source))
}

/// `{"account": "...", "region": "..."}`: where the events come from.
fn source_registry(value: &Json, path: &str, errors: &mut Errors) -> Option<SourceRegistry> {
    let obj = Object::new(value, path, SOURCE_FIELDS, errors)?;
    let account = account_field(&obj, errors);
    let region = region_field(&obj, errors);
    Some(SourceRegistry {
        account: account?.to_string(),
        region: region?.to_string(),
    })
}

fn account_field<'a>(obj: &Object<'a>, errors: &mut Errors) -> Option<&'a str> {
    obj.required_string("account", errors).and_then(|a| {
        let ok = a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            errors.add(&obj.path("account"), Problem::Account { got: shown(a) });
        }
        ok.then_some(a)
    })
}

fn region_field<'a>(obj: &Object<'a>, errors: &mut Errors) -> Option<&'a str> {
    obj.required_string("region", errors).and_then(|r| {
        let ok = is_region(r);
        if !ok {
            errors.add(&obj.path("region"), Problem::Region { got: shown(r) });
        }
        ok.then_some(r)
    })
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
                    message: super::truncated(first_line),
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
    let items = as_array(value, path, errors)?;
    if items.is_empty() {
        errors.add(path, Problem::Empty);
        return None;
    }
    if items.len() > MAX_DESTINATIONS {
        errors.add(
            path,
            Problem::TooMany {
                max: MAX_DESTINATIONS,
                found: items.len(),
            },
        );
    }
    let mut out = Vec::new();
    let mut complete = true;
    for (i, v) in items.iter().enumerate() {
        let item_path = item(path, i);
        match destination(v, &item_path, scope, errors) {
            Some(d) => {
                // Two identical targets would copy every image twice to one place.
                let same = out.iter().position(|o: &Destination| {
                    o.account == d.account
                        && o.region == d.region
                        && o.repository.as_str() == d.repository.as_str()
                });
                if let Some(other) = same {
                    errors.add(&item_path, Problem::DuplicateDestination { other });
                }
                out.push(d);
            }
            None => complete = false,
        }
    }
    complete.then_some(out)
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
    let role_arn = obj.string("role_arn", errors);
    let role_ok = match role_arn {
        None => true,
        Some(arn) => match role_account(arn) {
            None => {
                errors.add(&obj.path("role_arn"), Problem::RoleArn { got: shown(arn) });
                false
            }
            // Assuming a role in another account than the one pushed to is
            // almost always a copy-paste slip.
            Some(role_account) => match account {
                Some(account) if role_account != account => {
                    errors.add(
                        &obj.path("role_arn"),
                        Problem::RoleAccount {
                            role_account: role_account.to_string(),
                            account: account.to_string(),
                        },
                    );
                    false
                }
                _ => true,
            },
        },
    };
    let external_id = obj.string("external_id", errors);
    let external_ok = match external_id {
        None => true,
        Some(id) if !is_external_id(id) => {
            errors.add(
                &obj.path("external_id"),
                Problem::ExternalId { got: shown(id) },
            );
            false
        }
        Some(_) if !obj.has("role_arn") => {
            errors.add(&obj.path("external_id"), Problem::ExternalIdWithoutRole);
            false
        }
        Some(_) => true,
    };
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
    if !(role_ok && external_ok) {
        return None;
    }
    Some(Destination {
        account: account?.to_string(),
        region: region?.to_string(),
        role_arn: role_arn.map(str::to_string),
        external_id: external_id.map(str::to_string),
        repository: repository?,
    })
}

/// `us-east-1`, `us-gov-west-1`, `us-isob-east-1`, `cn-north-1`, `eusc-de-east-1`:
/// three or more lowercase words joined by `-`, the last one a number.
fn is_region(r: &str) -> bool {
    let words: Vec<&str> = r.split('-').collect();
    let Some((number, names)) = words.split_last() else {
        return false;
    };
    r.len() <= 32
        && names.len() >= 2
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && names
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (2..=4).contains(&names[0].len())
}

/// The account of `arn:<partition>:iam::<account>:role/<path/>name`, if it is one.
fn role_account(arn: &str) -> Option<&str> {
    if arn.len() > 2048 {
        return None;
    }
    let mut parts = arn.splitn(6, ':');
    let (arn_word, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        });
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    // IAM names and path segments: [\w+=,.@-]; the name is at most 64.
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    };
    let resource_ok = resource.strip_prefix("role/").is_some_and(|path| {
        let segments: Vec<&str> = path.split('/').collect();
        segments.iter().all(|s| segment_ok(s))
            && segments.last().is_some_and(|name| name.len() <= 64)
    });
    (arn_word == "arn"
        && partition_ok
        && service == "iam"
        && region.is_empty()
        && account_ok
        && resource_ok)
        .then_some(account)
}

/// STS's `ExternalId`: 2-1224 characters of `[\w+=,.@:/-]`.
fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
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
    if items.len() > MAX_GLOBS {
        errors.add(
            &path,
            Problem::TooMany {
                max: MAX_GLOBS,
                found: items.len(),
            },
        );
        return None;
    }
    let mut out = Vec::new();
    let mut complete = true;
    for (i, v) in items.iter().enumerate() {
        let item_path = item(&path, i);
        let Some(pattern) = as_string(v, &item_path, errors) else {
            complete = false;
            continue;
        };
        match Glob::new(pattern) {
            Ok(g) => out.push(g),
            Err(reason) => {
                errors.add(
                    &item_path,
                    Problem::Glob {
                        got: shown(pattern),
                        reason,
                    },
                );
                complete = false;
            }
        }
    }
    complete.then_some(out)
}

/// `true` = all defaults, `false` = never create, or an object of settings
/// (`"registry"`, leaving it to ECR's creation templates, is read above).
fn create_repository(
    value: &Json,
    path: &str,
    errors: &mut Errors,
) -> Option<Option<RepositorySettings>> {
    match value {
        Json::Bool(true) => return Some(Some(RepositorySettings::default())),
        Json::Bool(false) => return Some(None),
        Json::Object(_) => {}
        Json::String(other) => {
            errors.add(
                path,
                Problem::Variant {
                    got: shown(other),
                    expected: "true, false, \"registry\" or an object of settings",
                },
            );
            return None;
        }
        other => {
            errors.wrong_type(path, other, "a boolean, \"registry\" or an object");
            return None;
        }
    }
    let obj = Object::new(value, path, CREATE_FIELDS, errors)?;
    let tag_mutability = match obj.string("tag_mutability", errors) {
        None => Some(TagMutability::Mutable),
        Some("MUTABLE") => Some(TagMutability::Mutable),
        Some("IMMUTABLE") => Some(TagMutability::Immutable),
        Some("IMMUTABLE_WITH_EXCLUSION") => Some(TagMutability::ImmutableWithExclusion),
        Some("MUTABLE_WITH_EXCLUSION") => Some(TagMutability::MutableWithExclusion),
        Some(other) => {
            errors.add(
                &obj.path("tag_mutability"),
                Problem::Variant {
                    got: shown(other),
                    expected: "\"MUTABLE\", \"IMMUTABLE\", \"IMMUTABLE_WITH_EXCLUSION\", \"MUTABLE_WITH_EXCLUSION\"",
                },
            );
            None
        }
    };
    let exclusions = match (tag_mutability, obj.get("tag_mutability_exclusions")) {
        (Some(m), None) if m.takes_exclusions() => {
            errors.add(
                &obj.path("tag_mutability_exclusions"),
                Problem::ExclusionsMissing {
                    mutability: m.as_str(),
                },
            );
            None
        }
        (_, None) => Some(Vec::new()),
        (Some(m), Some(_)) if !m.takes_exclusions() => {
            errors.add(
                &obj.path("tag_mutability_exclusions"),
                Problem::ExclusionsWithoutExclusionMutability,
            );
            None
        }
        (_, Some(v)) => exclusion_filters(v, &obj.path("tag_mutability_exclusions"), errors),
    };
    let scan_on_push = obj.boolean("scan_on_push", false, errors);
    let encryption = match obj.get("encryption") {
        None => Some(Encryption::Aes256),
        Some(v) => encryption(v, &obj.path("encryption"), errors),
    };
    Some(Some(RepositorySettings {
        tag_mutability: tag_mutability?,
        tag_mutability_exclusions: exclusions?,
        scan_on_push,
        encryption: encryption?,
    }))
}

/// ECR's `ImageTagMutabilityExclusionFilter`: `^[0-9a-zA-Z._*-]{1,128}$`, WILDCARD.
fn exclusion_filters(value: &Json, path: &str, errors: &mut Errors) -> Option<Vec<String>> {
    let items = as_array(value, path, errors)?;
    if items.is_empty() {
        errors.add(path, Problem::Empty);
        return None;
    }
    if items.len() > MAX_EXCLUSIONS {
        errors.add(
            path,
            Problem::TooMany {
                max: MAX_EXCLUSIONS,
                found: items.len(),
            },
        );
        return None;
    }
    let mut out = Vec::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match as_string(item, &item_path, errors) {
            Some(f)
                if !f.is_empty()
                    && f.len() <= 128
                    && f.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b)) =>
            {
                out.push(f.to_string())
            }
            Some(f) => {
                errors.add(&item_path, Problem::ExclusionFilter { got: shown(f) });
                complete = false;
            }
            None => complete = false,
        }
    }
    complete.then_some(out)
}

fn encryption(value: &Json, path: &str, errors: &mut Errors) -> Option<Encryption> {
    let obj = Object::new(value, path, ENCRYPTION_FIELDS, errors)?;
    let key = obj.string("kms_key", errors);
    let key_path = obj.path("kms_key");
    match obj.string("type", errors) {
        None | Some("AES256") => {
            if key.is_some() {
                errors.add(&key_path, Problem::KmsKeyWithoutKms);
                return None;
            }
            Some(Encryption::Aes256)
        }
        Some("KMS") => match key {
            Some(k) if k.is_empty() || k.len() > 2048 || k.chars().any(char::is_whitespace) => {
                errors.add(&key_path, Problem::KmsKey { got: shown(k) });
                None
            }
            key => Some(Encryption::Kms {
                key: key.map(str::to_string),
            }),
        },
        Some(other) => {
            errors.add(
                &obj.path("type"),
                Problem::Variant {
                    got: shown(other),
                    expected: "\"AES256\", \"KMS\"",
                },
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_region_shapes_when_checked_then_partitions_pass_and_typos_fail() {
        for ok in [
            "us-east-1",
            "eu-west-2",
            "us-gov-west-1",
            "cn-north-1",
            "cn-northwest-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "ap-southeast-7",
            "eusc-de-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "us--east-1",
            "-us-east-1",
            "us-east-123",
            "",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn given_role_arns_when_checked_then_account_is_extracted_from_valid_ones_only() {
        assert_eq!(
            role_account("arn:aws:iam::222222222222:role/ecr-bridge-push"),
            Some("222222222222")
        );
        assert_eq!(
            role_account("arn:aws-us-gov:iam::222222222222:role/service/x+y=z,a.b@c-d"),
            Some("222222222222")
        );
        for bad in [
            "arn:aws:iam::22222222222:role/x",     // 11 digits
            "arn:aws:iam::222222222222:user/x",    // not a role
            "arn:aws:iam::222222222222:role/",     // no name
            "arn:aws:iam::222222222222:role/a//b", // empty path segment
            "arn:aws:sts::222222222222:role/x",
            "arn:aws:iam:us-east-1:222222222222:role/x",
            "arn:AWS:iam::222222222222:role/x",
            "ecr-bridge-push",
        ] {
            assert_eq!(role_account(bad), None, "{bad}");
        }
        let long_name = format!("arn:aws:iam::222222222222:role/{}", "n".repeat(65));
        assert_eq!(role_account(&long_name), None);
    }

    #[test]
    fn given_external_ids_when_checked_then_sts_alphabet_and_length_apply() {
        assert!(is_external_id("kuali-sync"));
        assert!(is_external_id("a:b/c=d,e.f@g+h_i"));
        assert!(!is_external_id("x"));
        assert!(!is_external_id("has space"));
        assert!(!is_external_id(&"a".repeat(1225)));
    }

    #[test]
    fn given_odd_keys_when_building_paths_then_they_are_quoted() {
        assert_eq!(child(ROOT, "rules"), "rules");
        assert_eq!(child("rules[0]", "match"), "rules[0].match");
        assert_eq!(child("rules[0]", "a b"), "rules[0][\"a b\"]");
    }

    #[test]
    fn given_duplicate_keys_when_parsed_then_the_repeat_is_reported() {
        let err = parse(r#"{"rules": [], "rules": []}"#).unwrap_err();
        assert_eq!(err.to_string(), "rules: field given more than once");
    }
}
