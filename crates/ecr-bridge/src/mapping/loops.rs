//! The load-time loop guard.
//!
//! ECR sends an `ECR Image Action` for every push, ours included. A copy into
//! the registry the events come from, under a name a rule routes, is
//! replicated again, and again. When the mapping states that registry
//! (`source`), each destination there is checked by looking for a concrete
//! example: a source name the rule takes whose rendered target a rule (the
//! same or another) matches. A refusal is therefore never a false alarm.
//! Exact rules are checked against every rule; prefix rules against exact
//! and prefix rules (and any rule an example happens to hit). Regex rules,
//! and templates whose shapes the search below does not cover, are left to
//! the replicator's run-time guard.

use std::collections::HashSet;

use super::error::Problem;
use super::quote::shown;
use super::schema::{RepositoryMatch, Rule, SourceRegistry};
use super::template::{Part, Template};
use crate::reference::is_valid_ecr_repository_name;

/// Full checks (two scans of the rules each) per destination: bounds what a
/// hostile document can cost; an example is almost always among the first.
const MAX_FULL_CHECKS: usize = 64;

/// A destination in the source registry whose copies a rule routes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Loop {
    pub rule_index: usize,
    pub destination_index: usize,
    pub problem: Problem,
}

/// Every destination of `rules` in `source` that would re-trigger replication.
pub(super) fn find(rules: &[Rule], source: &SourceRegistry) -> Vec<Loop> {
    let mut found = Vec::new();
    for rule in rules {
        for (i, d) in rule.destinations.iter().enumerate() {
            if d.access.account != source.account || d.access.region != source.region {
                continue;
            }
            if let Some(example) = example(rules, rule, &d.repository) {
                found.push(Loop {
                    rule_index: rule.index,
                    destination_index: i,
                    problem: Problem::Loop {
                        account: source.account.to_string(),
                        region: source.region.to_string(),
                        rule: rule.label(),
                        routed_by: example.routed_by.label(),
                        example_source: shown(&example.source),
                        example_target: shown(&example.target),
                    },
                });
            }
        }
    }
    found
}

struct Example<'r> {
    source: String,
    target: String,
    routed_by: &'r Rule,
}

/// A source name `rule` takes whose target, rendered with `template`, some
/// rule routes again; `None` when none was found.
fn example<'r>(rules: &'r [Rule], rule: &Rule, template: &Template) -> Option<Example<'r>> {
    // (source name, the rule it was built to hit): the cheap test first.
    let candidates: Vec<(String, Option<&Rule>)> = match &rule.matcher {
        RepositoryMatch::Exact(name) => vec![(name.clone(), None)],
        RepositoryMatch::Prefix(prefix) => {
            let mut list: Vec<(String, Option<&Rule>)> = ["", "a"]
                .iter()
                .map(|s| (format!("{prefix}{s}"), None))
                .collect();
            for target in rules {
                for suffix in suffixes_reaching(prefix, template.parts(), &target.matcher) {
                    list.push((format!("{prefix}{suffix}"), Some(target)));
                }
            }
            list
        }
        RepositoryMatch::Regex(_) => return None,
    };
    let mut seen = HashSet::new();
    let mut full_checks = 0;
    for (source, aimed_at) in candidates {
        let Ok(values) = rule.matcher.capture(&source) else {
            continue;
        };
        let target = template.render(&values);
        if aimed_at.is_some_and(|t| t.matcher.capture(&target).is_err()) {
            continue;
        }
        if !seen.insert(source.clone()) {
            continue;
        }
        full_checks += 1;
        if full_checks > MAX_FULL_CHECKS {
            return None;
        }
        // Only names ECR accepts are pushed, and only the first matching
        // rule routes a name: an earlier rule may take this source away.
        if !is_valid_ecr_repository_name(&source)
            || !is_valid_ecr_repository_name(&target)
            || first_match(rules, &source).map(|r| r.index) != Some(rule.index)
        {
            continue;
        }
        if let Some(routed_by) = first_match(rules, &target) {
            return Some(Example {
                source,
                target,
                routed_by,
            });
        }
    }
    None
}

fn first_match<'r>(rules: &'r [Rule], name: &str) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matcher.capture(name).is_ok())
}

/// Suffixes after `prefix` for which the template's output could be taken
/// by `target`. Candidates only: the caller renders and checks each.
fn suffixes_reaching(prefix: &str, parts: &[Part], target: &RepositoryMatch) -> Vec<String> {
    match target {
        RepositoryMatch::Exact(name) => suffix_rendering_exactly(prefix, parts, name)
            .into_iter()
            .collect(),
        RepositoryMatch::Prefix(wanted) => suffixes_rendering_with_prefix(prefix, parts, wanted),
        RepositoryMatch::Regex(_) => Vec::new(),
    }
}

/// The suffix `s` for which the template renders exactly `name`, if the
/// lengths allow one: every variable then has a known length and position.
fn suffix_rendering_exactly(prefix: &str, parts: &[Part], name: &str) -> Option<String> {
    let mut variables = 0;
    let mut fixed = 0;
    for part in parts {
        match part {
            Part::Literal(l) => fixed += l.len(),
            Part::Suffix => variables += 1,
            Part::Repository => {
                variables += 1;
                fixed += prefix.len();
            }
            Part::Group(_) => return None,
        }
    }
    if variables == 0 {
        // A constant name: the plain candidates cover it.
        return None;
    }
    let spare = name.len().checked_sub(fixed)?;
    if spare % variables != 0 {
        return None;
    }
    let len = spare / variables;
    let mut at = 0;
    for part in parts {
        match part {
            Part::Literal(l) => at += l.len(),
            Part::Suffix => return name.get(at..at + len).map(str::to_string),
            Part::Repository => {
                let start = at + prefix.len();
                return name.get(start..start + len).map(str::to_string);
            }
            Part::Group(_) => return None,
        }
    }
    None
}

/// Suffixes for which the template's output starts with `wanted`: the
/// literal text before the first variable must agree with it, and the
/// first variable supplies the rest.
fn suffixes_rendering_with_prefix(prefix: &str, parts: &[Part], wanted: &str) -> Vec<String> {
    let mut lead = String::new();
    let mut first_variable = None;
    for part in parts {
        match part {
            Part::Literal(l) => lead.push_str(l),
            other => {
                first_variable = Some(other);
                break;
            }
        }
    }
    // Once the fixed start is as long as `wanted`, any suffix does or none
    // does: the plain candidates settle it.
    if wanted.len() <= lead.len() {
        return Vec::new();
    }
    let Some(rest) = wanted.strip_prefix(lead.as_str()) else {
        return Vec::new();
    };
    let needed = match first_variable {
        Some(Part::Suffix) => rest,
        Some(Part::Repository) => match rest.strip_prefix(prefix) {
            Some(after_prefix) => after_prefix,
            // `prefix` itself supplies `rest` (or contradicts it): plain candidates.
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    // `needed` alone may end in a separator, which no name may.
    vec![needed.to_string(), format!("{needed}a")]
}

#[cfg(test)]
mod tests {
    use super::super::template::Scope;
    use super::*;

    fn prefix_template(text: &str) -> Template {
        Template::parse(
            text,
            &Scope {
                suffix: true,
                ..Scope::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn given_a_template_with_suffix_when_solved_for_an_exact_name_then_the_suffix_is_found() {
        let t = prefix_template("mirror-{suffix}");
        assert_eq!(
            suffix_rendering_exactly("app-", t.parts(), "mirror-web"),
            Some("web".to_string())
        );
        let t = prefix_template("{repository}-copy");
        assert_eq!(
            suffix_rendering_exactly("app-", t.parts(), "app-web-copy"),
            Some("web".to_string())
        );
        // Too short to hold the literal text.
        assert_eq!(suffix_rendering_exactly("app-", t.parts(), "x"), None);
    }

    #[test]
    fn given_a_template_when_solved_for_a_prefix_then_the_first_variable_supplies_the_rest() {
        let t = prefix_template("{suffix}");
        assert_eq!(
            suffixes_rendering_with_prefix("app-", t.parts(), "app-"),
            vec!["app-".to_string(), "app-a".to_string()]
        );
        let t = prefix_template("{repository}");
        assert_eq!(
            suffixes_rendering_with_prefix("app-", t.parts(), "app-web/"),
            vec!["web/".to_string(), "web/a".to_string()]
        );
        // The literal start contradicts the wanted prefix.
        let t = prefix_template("mirror/{suffix}");
        assert!(suffixes_rendering_with_prefix("app-", t.parts(), "app-").is_empty());
    }
}
