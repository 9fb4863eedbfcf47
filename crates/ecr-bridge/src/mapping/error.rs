//! Load-time errors. Every problem carries the JSON path of the field at
//! fault, and all problems of a document are reported together so a config
//! can be fixed in one go.

use std::fmt;

use super::glob::GlobError;
use super::template::TemplateError;

/// How many problems [`ConfigError::Invalid`]'s message spells out; the rest
/// are counted. `problems()` still has all of them.
const PROBLEMS_SHOWN: usize = 20;

/// Why a mapping config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("mapping config is {size} bytes; at most {limit} are allowed")]
    TooLarge { size: usize, limit: usize },
    #[error("mapping config is not valid JSON: {message} at line {line} column {column}")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    /// Parsed as JSON but not a valid config; never empty, in document order
    /// as far as the checks allow.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// Every field problem (empty for size and syntax errors).
    pub fn problems(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid(list) => list,
            _ => &[],
        }
    }
}

struct ProblemList<'a>(&'a [FieldError]);

impl fmt::Display for ProblemList<'_> {
    // One line, so that a Lambda log keeps it in one event.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(PROBLEMS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > PROBLEMS_SHOWN {
            write!(f, "; and {} more", self.0.len() - PROBLEMS_SHOWN)?;
        }
        Ok(())
    }
}

/// One problem at one place, e.g. `rules[2].destinations[0].account: must be 12 digits (got "12345")`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FieldError {
    /// `rules[2].destinations[0].account`; `(document)` for the whole document.
    pub path: String,
    pub problem: Problem,
}

/// What is wrong with a field. Values quoted in messages (`got`) are already
/// cut to about 100 characters and escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("invalid type: {found}, expected {expected}")]
    InvalidType {
        found: String,
        expected: &'static str,
    },
    #[error("unknown field (expected one of: {})", .expected.join(", "))]
    UnknownField { expected: &'static [&'static str] },
    #[error("field given more than once")]
    DuplicateField,
    #[error("missing required field")]
    MissingField,
    #[error("unsupported version {found} (only 1 is supported)")]
    UnsupportedVersion { found: String },
    #[error("at most {max} entries allowed (got {found})")]
    TooMany { max: usize, found: usize },
    #[error("longer than {max} characters")]
    TooLong { max: usize },
    #[error("must not be empty")]
    Empty,
    #[error("exactly one of exact, prefix, regex (got {})", given_kinds(.given))]
    MatchKind { given: Vec<&'static str> },
    #[error("not a valid ECR repository name, so no push could ever match it (got {got})")]
    ExactName { got: String },
    #[error(
        "must be lowercase letters, digits and . _ - / starting with a letter or digit (got {got})"
    )]
    Prefix { got: String },
    #[error("invalid regex: {message}")]
    Regex { message: String },
    #[error("capture group name {name:?} is reserved for the built-in template variable")]
    ReservedGroupName { name: String },
    #[error("unreachable: every name it matches is matched first by {earlier}")]
    Unreachable { earlier: String },
    #[error("rule name already used by rules[{other}]")]
    DuplicateRuleName { other: usize },
    #[error("must be 12 digits (got {got})")]
    Account { got: String },
    #[error("must be a region code like us-east-1 or us-gov-west-1 (got {got})")]
    Region { got: String },
    #[error("must be an IAM role ARN like arn:aws:iam::123456789012:role/name (got {got})")]
    RoleArn { got: String },
    #[error("role is in account {role_account} but the registry's account is {account}")]
    RoleAccount {
        role_account: String,
        account: String,
    },
    #[error("must be 2-1224 characters of A-Z a-z 0-9 _ + = , . @ : / - (got {got})")]
    ExternalId { got: String },
    #[error("only used when assuming a role: set role_arn too, or remove external_id")]
    ExternalIdWithoutRole,
    #[error("give either source or sources, not both")]
    SourceAndSources,
    #[error("same account and region as sources[{other}]")]
    DuplicateSource { other: usize },
    #[error("same account, region and repository as destinations[{other}]")]
    DuplicateDestination { other: usize },
    #[error(
        "loop: {rule} copies into the source registry ({account} {region}) names that {routed_by} routes again (e.g. {example_source} to {example_target}); ECR sends an event for that push too, so replication would re-trigger itself: use another account, region or repository name"
    )]
    Loop {
        account: String,
        region: String,
        /// Label of the rule the destination belongs to.
        rule: String,
        /// Label of the first rule that matches the rendered name.
        routed_by: String,
        example_source: String,
        example_target: String,
    },
    #[error(
        "must be the start of a valid ECR repository name, e.g. \"team/\" or \"coeus\" (got {got})"
    )]
    ConfinePrefix { got: String },
    #[error(
        "{} {start}, outside confine_to {prefix}: this destination could never receive an image",
        if *.whole { "always renders" } else { "every name it renders starts with" }
    )]
    NeverConfined {
        prefix: String,
        /// The whole rendered name, or the start all of them share.
        start: String,
        whole: bool,
    },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("invalid glob {got}: {reason}")]
    Glob { got: String, reason: GlobError },
    #[error("must be one of {expected} (got {got})")]
    Variant { got: String, expected: &'static str },
    #[error("only allowed with \"type\": \"KMS\"")]
    KmsKeyWithoutKms,
    #[error(
        "only allowed with \"tag_mutability\" IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION"
    )]
    ExclusionsWithoutExclusionMutability,
    #[error("required with {mutability}: list the wildcard filters of the tags it exempts")]
    ExclusionsMissing { mutability: &'static str },
    #[error("must be a wildcard filter of 1-128 characters of [0-9a-zA-Z._*-] (got {got})")]
    ExclusionFilter { got: String },
    #[error("must be a KMS key id, alias or ARN: 1-2048 characters, no whitespace (got {got})")]
    KmsKey { got: String },
}

fn given_kinds(given: &[&str]) -> String {
    if given.is_empty() {
        "none".to_string()
    } else {
        given.join(" and ")
    }
}
