//! `confine_to`: the prefix a destination's rendered names must stay under.
//!
//! Template values come from source names, and whoever may create a source
//! repository chooses those: with `kuali-` -> `{suffix}`, the source
//! `kuali-nextflow-approved/jane` renders `nextflow-approved/jane`, someone
//! else's repository in the target account. A destination that states its
//! prefix refuses, per push, every rendered name outside it; at load time
//! it refuses a template whose fixed text already leads outside, since such
//! a destination could never receive anything.
//!
//! A prefix `P` admits a (valid ECR) name `N` when `N` starts with `P` and
//! - `P` ends with `/` (`team/` admits everything under `team/`), or
//! - the rest of `N` is empty, starts with `/`, or has no `/` at all
//!   (`coeus` admits `coeus`, `coeus-feature` and `coeus/x`).
//!
//! So a `/` coming from a template value can never open a namespace of its
//! own next to `P`: `team` admits neither `teamevil/x` nor `team-x/y`. `..`
//! and `//` need no rule: no valid ECR name contains them.

use super::error::Problem;
use super::quote::shown;
use super::schema::{RepositoryMatch, Rule};
use super::template::Part;
use crate::reference::is_valid_ecr_repository_name;

/// Whether `prefix` can start a valid ECR repository name: `team/`,
/// `coeus`, `coeus-`. An empty or misspelt prefix (`Team/`, `a//`, `/x`)
/// would refuse every name, so it fails the document instead.
pub(super) fn is_valid_prefix(prefix: &str) -> bool {
    // A valid name can always be continued by a letter unless it is at the
    // length limit, and a prefix ending in a separator only by one.
    is_valid_ecr_repository_name(prefix) || is_valid_ecr_repository_name(&format!("{prefix}a"))
}

/// Whether the valid ECR name `name` is inside `prefix` (module docs).
pub(super) fn admits(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    if prefix.ends_with('/') {
        return !rest.is_empty();
    }
    rest.is_empty() || rest.starts_with('/') || !rest.contains('/')
}

/// What a message says `prefix` admits, so the semantics need no lookup.
pub(super) fn explained(prefix: &str) -> String {
    if prefix.ends_with('/') {
        format!("names must be under {}", shown(prefix))
    } else {
        format!(
            "names must be {p}, continue it without a \"/\", or be under {}",
            shown(&format!("{prefix}/")),
            p = shown(prefix)
        )
    }
}

/// Destinations of `rule` (by index) whose template can only ever render
/// names outside their `confine_to`, with the problem to report.
pub(super) fn never_inside(rule: &Rule) -> Vec<(usize, Problem)> {
    let mut found = Vec::new();
    for (i, d) in rule.destinations.iter().enumerate() {
        let Some(prefix) = d.confine_to.as_deref() else {
            continue;
        };
        let (head, whole) = known_start(d.repository.parts(), &rule.matcher);
        let outside = if whole {
            is_valid_ecr_repository_name(&head) && !admits(prefix, &head)
        } else {
            !could_continue_inside(prefix, &head)
        };
        if outside {
            found.push((
                i,
                Problem::NeverConfined {
                    prefix: shown(prefix),
                    start: shown(&head),
                    whole,
                },
            ));
        }
    }
    found
}

/// The text every rendered name starts with, and whether it is the whole
/// name: literals, and `{repository}` where the match fixes it (all of an
/// `exact` name, the start of a `prefix` one).
fn known_start(parts: &[Part], matcher: &RepositoryMatch) -> (String, bool) {
    let mut head = String::new();
    for part in parts {
        match (part, matcher) {
            (Part::Literal(text), _) => head.push_str(text),
            (Part::Repository, RepositoryMatch::Exact(name)) => head.push_str(name),
            (Part::Repository, RepositoryMatch::Prefix(start)) => {
                head.push_str(start);
                return (head, false);
            }
            _ => return (head, false),
        }
    }
    (head, true)
}

/// Whether some name starting with `head` could be inside `prefix`.
fn could_continue_inside(prefix: &str, head: &str) -> bool {
    match head.strip_prefix(prefix) {
        // What follows may still reach the prefix, or leave it.
        None => prefix.starts_with(head),
        // Past the prefix: a `/` already there that leaves it stays.
        Some(rest) => {
            prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/') || !rest.contains('/')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_prefixes_when_checked_then_only_starts_of_valid_names_pass() {
        for ok in [
            "team/",
            "coeus",
            "coeus-",
            "a",
            "team/app.",
            "x".repeat(256).as_str(),
        ] {
            assert!(is_valid_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "/team",
            "Team/",
            "a//",
            "a..",
            "-a",
            "team/ x",
            &"x/".repeat(128),
        ] {
            assert!(!is_valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn given_a_prefix_without_slash_when_names_are_checked_then_whole_components_decide() {
        for inside in ["team", "team-x", "teamevil", "team/x", "team/x/y"] {
            assert!(admits("team", inside), "{inside}");
        }
        for outside in ["teamevil/x", "team-x/y", "tea", "other/team", "xteam"] {
            assert!(!admits("team", outside), "{outside}");
        }
    }

    #[test]
    fn given_a_prefix_with_slash_when_names_are_checked_then_only_names_under_it_pass() {
        assert!(admits("team/", "team/x"));
        assert!(admits("team/", "team/x/y"));
        assert!(!admits("team/", "team"));
        assert!(!admits("team/", "teamevil/x"));
    }

    #[test]
    fn given_a_known_start_when_asked_then_a_start_already_outside_is_never_inside() {
        assert!(could_continue_inside("team/", ""));
        assert!(could_continue_inside("team/", "te"));
        assert!(could_continue_inside("team/", "team/app-"));
        assert!(could_continue_inside("coeus", "coeus-"));
        assert!(!could_continue_inside("team/", "mirror/"));
        assert!(!could_continue_inside("coeus", "coeusx/"));
    }
}
