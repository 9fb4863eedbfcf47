//! `create_repository`: the settings a missing target repository is created
//! with (mutability and its exclusions, scan on push, encryption).

use super::error::Problem;
use super::quote::shown;
use super::schema::{Encryption, RepositorySettings, TagMutability};
use super::tree::{all_items, as_string, at_most, non_empty_array, Errors, Json, Object};

const CREATE_FIELDS: &[&str] = &[
    "tag_mutability",
    "tag_mutability_exclusions",
    "scan_on_push",
    "encryption",
];
/// More filters than this is a mistake, not a repository setting.
const MAX_EXCLUSIONS: usize = 100;
const ENCRYPTION_FIELDS: &[&str] = &["type", "kms_key"];

/// `true` = all defaults, `false` = never create, or an object of settings
/// (`"registry"`, leaving it to ECR's creation templates, is read above).
pub(super) fn create_repository(
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
    let items = non_empty_array(value, path, errors)?;
    if !at_most(items, MAX_EXCLUSIONS, path, errors) {
        return None;
    }
    all_items(items, path, errors, |item, item_path, _, errors| {
        let f = as_string(item, item_path, errors)?;
        let valid = !f.is_empty()
            && f.len() <= 128
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
        if !valid {
            errors.add(item_path, Problem::ExclusionFilter { got: shown(f) });
            return None;
        }
        Some(f.to_string())
    })
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
