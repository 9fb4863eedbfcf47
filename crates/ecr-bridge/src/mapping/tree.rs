//! The JSON tree a mapping document is first read into, and the helpers
//! that walk it collecting every problem with its path.
//!
//! A tree of our own rather than `serde_json::Value`: it keeps keys in
//! document order and keeps duplicates, which a map would silently collapse.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{FieldError, Problem};
use super::quote::shown;

/// The path of the document itself.
pub(super) const ROOT: &str = "(document)";

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
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

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<FieldError>);

impl Errors {
    pub(super) fn add(&mut self, path: &str, problem: impl Into<Problem>) {
        self.0.push(FieldError {
            path: path.to_string(),
            problem: problem.into(),
        });
    }

    pub(super) fn wrong_type(&mut self, path: &str, found: &Json, expected: &'static str) {
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
pub(super) fn child(parent: &str, key: &str) -> String {
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

pub(super) fn item(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// An object whose unknown and repeated keys have been reported.
pub(super) struct Object<'a> {
    path: String,
    fields: Vec<(&'a str, &'a Json)>,
}

impl<'a> Object<'a> {
    pub(super) fn new(
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

    pub(super) fn path(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// Present and not `null`: an explicit `null` reads as "not set".
    pub(super) fn get(&self, key: &str) -> Option<&'a Json> {
        self.fields
            .iter()
            .find(|(k, v)| *k == key && !matches!(v, Json::Null))
            .map(|(_, v)| *v)
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn required(&self, key: &str, errors: &mut Errors) -> Option<&'a Json> {
        let v = self.get(key);
        if v.is_none() {
            errors.add(&self.path(key), Problem::MissingField);
        }
        v
    }

    pub(super) fn string(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        self.get(key)
            .and_then(|v| as_string(v, &self.path(key), errors))
    }

    pub(super) fn required_string(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        self.required(key, errors)
            .and_then(|v| as_string(v, &self.path(key), errors))
    }

    pub(super) fn boolean(&self, key: &str, default: bool, errors: &mut Errors) -> bool {
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

pub(super) fn as_string<'a>(value: &'a Json, path: &str, errors: &mut Errors) -> Option<&'a str> {
    match value {
        Json::String(s) => Some(s),
        other => {
            errors.wrong_type(path, other, "a string");
            None
        }
    }
}

pub(super) fn as_array<'a>(value: &'a Json, path: &str, errors: &mut Errors) -> Option<&'a [Json]> {
    match value {
        Json::Array(items) => Some(items),
        other => {
            errors.wrong_type(path, other, "an array");
            None
        }
    }
}

/// An array that must hold at least one item.
pub(super) fn non_empty_array<'a>(
    value: &'a Json,
    path: &str,
    errors: &mut Errors,
) -> Option<&'a [Json]> {
    let items = as_array(value, path, errors)?;
    if items.is_empty() {
        errors.add(path, Problem::Empty);
        return None;
    }
    Some(items)
}

/// Reports more than `max` items at `path`; `false` when it did. Whether to
/// read them anyway is the caller's choice.
pub(super) fn at_most(items: &[Json], max: usize, path: &str, errors: &mut Errors) -> bool {
    if items.len() <= max {
        return true;
    }
    errors.add(
        path,
        Problem::TooMany {
            max,
            found: items.len(),
        },
    );
    false
}

/// Each item read by `each` (given its path and the items read before it),
/// or `None` if any was not. All are read either way, so that every item's
/// problems are reported at once.
pub(super) fn all_items<T>(
    items: &[Json],
    path: &str,
    errors: &mut Errors,
    mut each: impl FnMut(&Json, &str, &[T], &mut Errors) -> Option<T>,
) -> Option<Vec<T>> {
    let mut out = Vec::new();
    let mut complete = true;
    for (i, v) in items.iter().enumerate() {
        match each(v, &item(path, i), &out, errors) {
            Some(t) => out.push(t),
            None => complete = false,
        }
    }
    complete.then_some(out)
}

pub(super) fn check_length(value: &str, max: usize, path: &str, errors: &mut Errors) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_odd_keys_when_building_paths_then_they_are_quoted() {
        assert_eq!(child(ROOT, "rules"), "rules");
        assert_eq!(child("rules[0]", "match"), "rules[0].match");
        assert_eq!(child("rules[0]", "a b"), "rules[0][\"a b\"]");
    }
}
