//! The validated config: what [`super::MappingConfig`] holds after loading.
//! Values here have passed every load-time check, so fields are read-only.

use serde::{Serialize, Serializer};

use super::glob::Glob;
use super::quote::truncated;
use super::reasons::{Mismatch, TagFilterReason};
use super::template::{Captured, Scope, Template};
use crate::ids::{AccountId, AssumeRole, Region, RegistryAccess};

/// One rule: which source repositories it takes and where they go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub(super) name: String,
    pub(super) index: usize,
    #[serde(rename = "match")]
    pub(super) matcher: RepositoryMatch,
    pub(super) destinations: Vec<Destination>,
    pub(super) tags: TagFilter,
    pub(super) create_repository: Option<RepositorySettings>,
    /// `"create_repository": "registry"`: never look up or create the
    /// target repository; ECR creates it on push where a repository
    /// creation template (`CREATE_ON_PUSH`) covers the name, with the
    /// organisation's settings (lifecycle, policy, KMS, mutability).
    pub(super) registry_creates_repository: bool,
    pub(super) propagate_deletes: bool,
    pub(super) copy_referrers: bool,
}

impl Rule {
    /// As configured, or `rules[<index>]`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Position in `rules`, from 0.
    pub fn index(&self) -> usize {
        self.index
    }
    pub fn matcher(&self) -> &RepositoryMatch {
        &self.matcher
    }
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }
    pub fn tags(&self) -> &TagFilter {
        &self.tags
    }
    /// `None`: a missing target repository is an error, never created.
    pub fn create_repository(&self) -> Option<&RepositorySettings> {
        self.create_repository.as_ref()
    }
    pub fn registry_creates_repository(&self) -> bool {
        self.registry_creates_repository
    }
    pub fn propagate_deletes(&self) -> bool {
        self.propagate_deletes
    }
    pub fn copy_referrers(&self) -> bool {
        self.copy_referrers
    }

    /// `rules[1]` or `rules[1] (kuali)`: the index finds it in the file, the name in logs.
    pub fn label(&self) -> String {
        rule_label(self.index, &self.name)
    }
}

/// `rules[1]` or `rules[1] (kuali)` for a rule known by index and name.
pub fn rule_label(index: usize, name: &str) -> String {
    let positional = format!("rules[{index}]");
    if name == positional {
        positional
    } else {
        format!("{positional} ({})", truncated(name))
    }
}

/// Which source repository names a rule takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepositoryMatch {
    Exact(String),
    /// The rest of the name after the prefix is `{suffix}`.
    Prefix(String),
    Regex(NameRegex),
}

impl RepositoryMatch {
    /// The template variables this kind of match provides.
    pub fn scope(&self) -> Scope {
        match self {
            RepositoryMatch::Exact(_) => Scope::default(),
            RepositoryMatch::Prefix(_) => Scope {
                suffix: true,
                ..Scope::default()
            },
            RepositoryMatch::Regex(r) => Scope {
                suffix: false,
                groups: r.groups,
                names: r.names.clone(),
            },
        }
    }

    /// The template values for `name`, or why it does not match.
    pub fn capture<'h>(&self, name: &'h str) -> Result<Captured<'h>, Mismatch> {
        let plain = |suffix| Captured {
            repository: name,
            suffix,
            groups: vec![Some(name)],
        };
        match self {
            RepositoryMatch::Exact(exact) if name == exact => Ok(plain("")),
            RepositoryMatch::Exact(exact) => Err(Mismatch::NotEqual {
                exact: truncated(exact),
            }),
            RepositoryMatch::Prefix(prefix) => match name.strip_prefix(prefix.as_str()) {
                Some(suffix) => Ok(plain(suffix)),
                None => Err(Mismatch::NoPrefix {
                    prefix: truncated(prefix),
                }),
            },
            RepositoryMatch::Regex(r) => match r.anchored.captures(name) {
                Some(caps) => Ok(Captured {
                    repository: name,
                    suffix: "",
                    groups: (0..caps.len())
                        .map(|i| caps.get(i).map(|m| m.as_str()))
                        .collect(),
                }),
                None => Err(Mismatch::NoRegexMatch {
                    regex: truncated(&r.pattern),
                }),
            },
        }
    }

    /// True when every name `later` matches is matched by `self` too, so a
    /// rule with `later` placed after `self` could never win. Only decided
    /// where it is cheap and exact; regex against a prefix or regex is not.
    pub(super) fn covers(&self, later: &RepositoryMatch) -> bool {
        use RepositoryMatch::*;
        match (self, later) {
            (Exact(a), Exact(b)) => a == b,
            (Prefix(p), Exact(b)) | (Prefix(p), Prefix(b)) => b.starts_with(p.as_str()),
            (Regex(r), Exact(b)) => r.anchored.is_match(b),
            _ => false,
        }
    }
}

/// A regex that must match the whole source name.
#[derive(Debug, Clone)]
pub struct NameRegex {
    /// As written in the config, for messages and for printing the config.
    pub(super) pattern: String,
    /// `^(?:pattern)$`, so a forgotten anchor cannot widen the match.
    pub(super) anchored: regex_lite::Regex,
    pub(super) groups: usize,
    pub(super) names: Vec<(String, usize)>,
}

impl NameRegex {
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl PartialEq for NameRegex {
    // The compiled form follows from the pattern.
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Serialize for NameRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

/// A registry whose `ECR Image Action`s the mapping receives (the
/// document's optional `source`, or one of its `sources`), and the role
/// that reads it. Listed, they refuse at load time destinations in them
/// that would re-trigger replication, and at event time the events of any
/// registry not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRegistry {
    pub(super) account: AccountId,
    pub(super) region: Region,
    /// `role_arn` and `external_id`; none: the deployment's source role
    /// (`SOURCE_ROLE_ARN`) or its own credentials.
    #[serde(flatten)]
    pub(super) assume: Option<AssumeRole>,
}

impl SourceRegistry {
    pub fn account(&self) -> &str {
        self.account.as_str()
    }
    pub fn region(&self) -> &str {
        self.region.as_str()
    }
    pub fn account_id(&self) -> &AccountId {
        &self.account
    }
    pub fn region_id(&self) -> &Region {
        &self.region
    }
    pub fn assume(&self) -> Option<&AssumeRole> {
        self.assume.as_ref()
    }
    /// How to read it: its own role, else `default`.
    pub fn access(&self, default: Option<&AssumeRole>) -> RegistryAccess {
        RegistryAccess::new(
            self.account.clone(),
            self.region.clone(),
            self.assume.as_ref().or(default).cloned(),
        )
    }
}

/// One place a matching image is copied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// `account`, `region`, `role_arn`, `external_id`, flat.
    #[serde(flatten)]
    pub(super) access: RegistryAccess,
    pub(super) repository: Template,
    /// The prefix every rendered name must stay inside (see `confine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) confine_to: Option<String>,
}

impl Destination {
    /// Where copies go, and the role they are pushed through.
    pub fn access(&self) -> &RegistryAccess {
        &self.access
    }
    pub fn account(&self) -> &str {
        self.access.account.as_str()
    }
    pub fn region(&self) -> &str {
        self.access.region.as_str()
    }
    /// Role to assume for pushing; `None`: the function's own credentials.
    pub fn role_arn(&self) -> Option<&str> {
        self.access.role_arn().map(|r| r.as_str())
    }
    pub fn external_id(&self) -> Option<&str> {
        self.access.external_id().map(|e| e.as_str())
    }
    pub fn repository(&self) -> &Template {
        &self.repository
    }
    /// `None`: any name the template renders is taken.
    pub fn confine_to(&self) -> Option<&str> {
        self.confine_to.as_deref()
    }
}

/// Which tags of a matching repository replicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagFilter {
    /// Empty: every tag.
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
    /// Whether digest-only pushes (e.g. an index's per-platform children) replicate.
    pub untagged: bool,
}

impl Default for TagFilter {
    fn default() -> Self {
        TagFilter {
            include: Vec::new(),
            exclude: Vec::new(),
            untagged: true,
        }
    }
}

impl TagFilter {
    /// `Ok` when a push with `tag` (or none) replicates.
    pub fn admits(&self, tag: Option<&str>) -> Result<(), TagFilterReason> {
        let Some(tag) = tag else {
            return if self.untagged {
                Ok(())
            } else {
                Err(TagFilterReason::UntaggedOff)
            };
        };
        if !self.include.is_empty() && !self.include.iter().any(|g| g.matches(tag)) {
            return Err(TagFilterReason::NotIncluded {
                tag: truncated(tag),
                include: self.include.iter().map(|g| truncated(g.as_str())).collect(),
            });
        }
        if let Some(g) = self.exclude.iter().find(|g| g.matches(tag)) {
            return Err(TagFilterReason::Excluded {
                tag: truncated(tag),
                pattern: truncated(g.as_str()),
            });
        }
        Ok(())
    }
}

/// How to create a target repository that does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositorySettings {
    pub tag_mutability: TagMutability,
    /// Wildcard filters (`sha256-*.sig`) of tags exempt from the
    /// mutability setting: only with the `*_WITH_EXCLUSION` mutabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_mutability_exclusions: Vec<String>,
    pub scan_on_push: bool,
    pub encryption: Encryption,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings {
            tag_mutability: TagMutability::Mutable,
            tag_mutability_exclusions: Vec::new(),
            scan_on_push: false,
            encryption: Encryption::Aes256,
        }
    }
}

/// ECR's `imageTagMutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TagMutability {
    Mutable,
    Immutable,
    /// Immutable but for the tags `tag_mutability_exclusions` match.
    #[serde(rename = "IMMUTABLE_WITH_EXCLUSION")]
    ImmutableWithExclusion,
    /// Mutable but for the tags `tag_mutability_exclusions` match.
    #[serde(rename = "MUTABLE_WITH_EXCLUSION")]
    MutableWithExclusion,
}

impl TagMutability {
    /// The value ECR's API takes.
    pub fn as_str(self) -> &'static str {
        match self {
            TagMutability::Mutable => "MUTABLE",
            TagMutability::Immutable => "IMMUTABLE",
            TagMutability::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
            TagMutability::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
        }
    }

    pub fn takes_exclusions(self) -> bool {
        matches!(
            self,
            TagMutability::ImmutableWithExclusion | TagMutability::MutableWithExclusion
        )
    }
}

/// ECR's `encryptionConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Encryption {
    #[serde(rename = "AES256")]
    Aes256,
    /// `key: None`: ECR's AWS-managed key.
    #[serde(rename = "KMS")]
    Kms {
        #[serde(rename = "kms_key", skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

impl Encryption {
    /// The `encryptionType` ECR's API takes.
    pub fn encryption_type(&self) -> &'static str {
        match self {
            Encryption::Aes256 => "AES256",
            Encryption::Kms { .. } => "KMS",
        }
    }
}
