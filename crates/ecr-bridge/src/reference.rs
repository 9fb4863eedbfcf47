//! Image references (`host[:port]/repo[:tag|@digest]`), repository names and tags.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// ECR's tag limit (`ImageIdentifier.imageTag`); the distribution spec's is 128.
pub const MAX_TAG_LEN: usize = 300;
/// ECR's repository name limits.
pub const MIN_REPOSITORY_LEN: usize = 2;
pub const MAX_REPOSITORY_LEN: usize = 256;

/// What a reference points at inside a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Tag(String),
    Digest(Digest),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Tag(t) => f.write_str(t),
            Selector::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// `host[:port]/repository[:tag][@digest]`. The host is always explicit: this
/// tool never guesses Docker Hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// The digest if given, else the tag, else `None` (the caller decides a default).
    pub fn selector(&self) -> Option<Selector> {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Some(Selector::Digest(d.clone())),
            (None, Some(t)) => Some(Selector::Tag(t.clone())),
            (None, None) => None,
        }
    }
}

/// Why a text is not an image reference (or one of its parts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {0:?}: expected host[:port]/repository[:tag|@digest]")]
    Shape(String),
    #[error("invalid registry host {0:?}")]
    Host(String),
    #[error("invalid repository name {name:?}: {reason}")]
    Repository { name: String, reason: &'static str },
    #[error("invalid tag {tag:?}: tags are 1-{MAX_TAG_LEN} characters of [A-Za-z0-9_.-] not starting with '.' or '-'")]
    Tag { tag: String },
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestParseError),
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let shape = || ReferenceError::Shape(truncate(input));
        let (registry, rest) = input.split_once('/').ok_or_else(shape)?;
        validate_host(registry)?;
        let (name_and_tag, digest) = match rest.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (rest, None),
        };
        // A ':' after the last '/' separates the tag; ports only live in the host.
        let (repository, tag) = match name_and_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (name_and_tag, None),
        };
        validate_repository(repository)?;
        if let Some(t) = &tag {
            validate_tag(t)?;
        }
        Ok(ImageReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let err = || ReferenceError::Host(truncate(host));
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        p.parse::<u16>().map_err(|_| err())?;
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    // A bare word like "library" is a repository path, not a host: demand a dot, a port or localhost.
    if !ok || !(name.contains('.') || port.is_some() || name == "localhost") {
        return Err(err());
    }
    Ok(())
}

/// The distribution spec's repository name grammar: path components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`, separated by `/`;
/// with ECR's length limits (2-256), since ECR refuses anything else and
/// every name this tool acts on is an ECR name.
pub fn validate_repository(name: &str) -> Result<(), ReferenceError> {
    match repository_problem(name) {
        None => Ok(()),
        Some(reason) => Err(ReferenceError::Repository {
            name: truncate(name),
            reason,
        }),
    }
}

/// What [`validate_repository`] finds wrong with `name`, if anything; the
/// one rule behind it and [`crate::ids::RepositoryName`].
pub(crate) fn repository_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() < MIN_REPOSITORY_LEN {
        return Some("shorter than 2 characters (ECR's minimum)");
    }
    if name.len() > MAX_REPOSITORY_LEN {
        return Some("longer than 256 characters (ECR's maximum)");
    }
    if !name.split('/').all(valid_component) {
        return Some(
            "each /-separated component must be [a-z0-9]+ joined by '.', '_', '__' or '-'",
        );
    }
    None
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// ECR's stricter rule: 2-256 characters, single separators
/// (`(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`).
pub fn is_valid_ecr_repository_name(name: &str) -> bool {
    if name.len() < MIN_REPOSITORY_LEN || name.len() > MAX_REPOSITORY_LEN {
        return false;
    }
    name.split('/').all(|component| {
        let b = component.as_bytes();
        !b.is_empty()
            && is_alnum(b[0])
            && is_alnum(b[b.len() - 1])
            && b.windows(2).all(|w| is_alnum(w[0]) || is_alnum(w[1]))
            && b.iter()
                .all(|&x| is_alnum(x) || matches!(x, b'.' | b'_' | b'-'))
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,299}`: the distribution grammar with
/// ECR's length, so a tag ECR accepted is never refused here.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag { tag: truncate(tag) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn given_host_with_port_and_tag_when_parsed_then_parts_are_split_correctly() {
        let r: ImageReference = "127.0.0.1:5000/team/app:v1.2".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:v1.2");
    }

    #[test]
    fn given_digest_reference_when_parsed_then_digest_selects() {
        let r: ImageReference =
            format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/kuali-coeus@{D}")
                .parse()
                .unwrap();
        assert_eq!(r.repository, "kuali-coeus");
        assert_eq!(r.selector(), Some(Selector::Digest(D.parse().unwrap())));
    }

    #[test]
    fn given_tag_and_digest_when_parsed_then_digest_wins() {
        let r: ImageReference = format!("localhost:5000/app:latest@{D}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(matches!(r.selector(), Some(Selector::Digest(_))));
    }

    #[test]
    fn given_no_tag_when_parsed_then_selector_is_none() {
        let r: ImageReference = "registry.example.com/a/b/c".parse().unwrap();
        assert_eq!(r.selector(), None);
    }

    #[test]
    fn given_bad_references_when_parsed_then_each_is_refused() {
        for bad in [
            "",
            "app:latest",            // no host
            "library/app",           // first component is not a host
            "host.io/",              // no repository
            "host.io/App",           // uppercase
            "host.io/a//b",          // empty component
            "host.io/-a",            // leading separator
            "host.io/a:",            // empty tag
            "host.io/a:.bad",        // tag starts with '.'
            "host.io:99999/a",       // port out of range
            "host.io/a@sha256:1234", // short digest
        ] {
            assert!(
                bad.parse::<ImageReference>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn given_separator_variants_when_validated_then_grammar_is_followed() {
        for ok in ["ab", "a.b", "a_b", "a__b", "a---b", "a/b-c/d.e"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in ["a___b", "a._b", "a.", "_a", "a/", "a b"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn given_ecr_rules_when_checked_then_stricter_than_distribution() {
        assert!(is_valid_ecr_repository_name(
            "nextflow-approved/user1-40username-2ecom"
        ));
        assert!(!is_valid_ecr_repository_name("a")); // too short
        assert!(!is_valid_ecr_repository_name("nextflow-approved/-55ser")); // leading '-'
        assert!(!is_valid_ecr_repository_name("a__b")); // double separator
        assert!(!is_valid_ecr_repository_name(&"a".repeat(257)));
        assert!(is_valid_ecr_repository_name(&"a".repeat(256)));
    }

    #[test]
    fn given_repository_lengths_when_validated_then_ecr_limits_2_to_256_apply() {
        let e = validate_repository("a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid repository name \"a\": shorter than 2 characters (ECR's minimum)"
        );
        assert!(validate_repository("ab").is_ok());
        assert!(validate_repository(&"a".repeat(256)).is_ok());
        let e = validate_repository(&"a".repeat(257)).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("longer than 256 characters (ECR's maximum)"),
            "{e}"
        );
        assert!("host.io/a:v1".parse::<ImageReference>().is_err());
        assert!(format!("host.io/{}:v1", "a".repeat(256))
            .parse::<ImageReference>()
            .is_ok());
    }

    #[test]
    fn given_tags_when_validated_then_300_chars_is_the_limit() {
        assert!(validate_tag(&"a".repeat(129)).is_ok());
        assert!(validate_tag(&"a".repeat(300)).is_ok());
        let e = validate_tag(&"a".repeat(301)).unwrap_err();
        assert!(e.to_string().contains("tags are 1-300 characters"), "{e}");
        assert!(validate_tag("_x").is_ok());
        assert!(validate_tag("-x").is_err());
        assert!(validate_tag(".x").is_err());
        assert!(validate_tag("a/b").is_err());
        assert!(validate_tag("").is_err());
        let r: ImageReference = format!("host.io/ab:{}", "t".repeat(300)).parse().unwrap();
        assert_eq!(r.tag.map(|t| t.len()), Some(300));
    }
}
