//! Repository names, by the rule in [`crate::reference`]: the distribution
//! grammar with ECR's length limits.

use std::str::FromStr;

use super::text_identifier;
use crate::reference::{repository_problem, truncate};

/// A valid repository name (see [`crate::reference::validate_repository`]).
/// Names a mapping renders for ECR to create must also pass ECR's stricter
/// rule, [`crate::reference::is_valid_ecr_repository_name`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryName(String);

text_identifier!(RepositoryName, RepositoryNameError);

/// The same text as [`crate::reference::ReferenceError::Repository`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository name {name:?}: {reason}")]
pub struct RepositoryNameError {
    pub name: String,
    pub reason: &'static str,
}

impl FromStr for RepositoryName {
    type Err = RepositoryNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match repository_problem(name) {
            None => Ok(RepositoryName(name.to_string())),
            Some(reason) => Err(RepositoryNameError {
                name: truncate(name),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::validate_repository;

    #[test]
    fn given_names_when_parsed_then_the_reference_rule_and_its_message_apply() {
        for name in ["ab", "team/app", "a__b", "a--b", "a", "Bad Name", ""] {
            let parsed = name.parse::<RepositoryName>();
            let checked = validate_repository(name);
            assert_eq!(parsed.is_ok(), checked.is_ok(), "{name:?}");
            if let (Err(a), Err(b)) = (parsed, checked) {
                assert_eq!(a.to_string(), b.to_string());
            }
        }
        let long = "a".repeat(257).parse::<RepositoryName>().unwrap_err();
        assert!(
            long.to_string().contains("longer than 256 characters"),
            "{long}"
        );
    }
}
