//! Destination repository templates: literal text with `{var}` holes.
//!
//! Templates are checked against the rule's match kind when the config loads,
//! so a variable that can never have a value is a config error rather than a
//! surprise on the first push. Variables are resolved to capture indexes at
//! that point; rendering is then plain concatenation.

use std::fmt;

use serde::Serialize;

use super::quote::truncated;
use crate::reference::is_valid_ecr_repository_name;

/// A rendered name is at most 256 characters; allow room for variables
/// that render shorter than their `{...}` spelling.
pub const MAX_TEMPLATE_LEN: usize = 512;

/// Default when a destination names no repository: keep the source name.
pub const SAME_NAME: &str = "{repository}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Literal(String),
    Repository,
    Suffix,
    /// Capture group by number; named groups are resolved to theirs.
    Group(usize),
}

/// Which variables a template may use: fixed by the rule's `match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub suffix: bool,
    /// Number of capture groups, not counting group 0.
    pub groups: usize,
    /// Named groups and their numbers.
    pub names: Vec<(String, usize)>,
}

impl Scope {
    fn resolve(&self, name: &str) -> Option<Part> {
        match name {
            "repository" => return Some(Part::Repository),
            "suffix" if self.suffix => return Some(Part::Suffix),
            _ => {}
        }
        // Only canonical numbers: `{01}` would be a confusing second spelling.
        if name.bytes().all(|b| b.is_ascii_digit()) && !name.starts_with('0') {
            return match name.parse::<usize>() {
                Ok(n) if n <= self.groups => Some(Part::Group(n)),
                _ => None,
            };
        }
        self.names
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, i)| Part::Group(i))
    }

    /// For error messages: `{repository}, {suffix}` or `{repository}, {1}, {2}, {team}`.
    pub fn available(&self) -> String {
        let mut vars = vec!["{repository}".to_string()];
        if self.suffix {
            vars.push("{suffix}".to_string());
        }
        // A regex with dozens of groups would make an unreadable list.
        if self.groups > 6 {
            vars.push(format!("{{1}}…{{{}}}", self.groups));
        } else {
            vars.extend((1..=self.groups).map(|i| format!("{{{i}}}")));
        }
        vars.extend(self.names.iter().map(|(n, _)| format!("{{{n}}}")));
        vars.join(", ")
    }
}

/// Why a template was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("empty template")]
    Empty,
    #[error("template longer than {MAX_TEMPLATE_LEN} characters")]
    TooLong,
    #[error("unbalanced braces: '{{' at character {at} is never closed")]
    Unclosed { at: usize },
    #[error("unbalanced braces: '}}' at character {at} has no opening '{{'")]
    Unopened { at: usize },
    #[error("unknown template variable {{{name}}} (available: {available})")]
    UnknownVariable { name: String, available: String },
    #[error("character {ch:?} can never appear in an ECR repository name")]
    Character { ch: char },
    #[error("{name:?} is not a valid ECR repository name")]
    InvalidName { name: String },
}

/// Values for one match, indexed like the template's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured<'h> {
    pub repository: &'h str,
    pub suffix: &'h str,
    /// Index 0 is the whole match; a group that did not take part is `None`.
    pub groups: Vec<Option<&'h str>>,
}

/// A checked template, printed as its source text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Template {
    source: String,
    #[serde(skip)]
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str, scope: &Scope) -> Result<Template, TemplateError> {
        if source.is_empty() {
            return Err(TemplateError::Empty);
        }
        if source.chars().count() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().enumerate();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => {
                                return Err(TemplateError::Unclosed { at: i + 1 })
                            }
                            Some((_, ch)) => name.push(ch),
                        }
                    }
                    let part =
                        scope
                            .resolve(&name)
                            .ok_or_else(|| TemplateError::UnknownVariable {
                                name: truncated(&name),
                                available: scope.available(),
                            })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => return Err(TemplateError::Unopened { at: i + 1 }),
                // Upper case, spaces and the like can never render to a valid
                // name whatever the source is, so refuse them now.
                c if !(c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, '.' | '_' | '-' | '/')) =>
                {
                    return Err(TemplateError::Character { ch: c })
                }
                c => literal.push(c),
            }
        }
        if parts.is_empty() {
            // Fully static: it either is a valid name now or never will be.
            if !is_valid_ecr_repository_name(&literal) {
                return Err(TemplateError::InvalidName {
                    name: truncated(&literal),
                });
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The checked pieces, for the load-time loop analysis.
    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Fills the holes. The result is not checked here: whether it is a valid
    /// name depends on the source name, so the caller reports it per event.
    pub fn render(&self, values: &Captured<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Repository => out.push_str(values.repository),
                Part::Suffix => out.push_str(values.suffix),
                Part::Group(i) => {
                    out.push_str(values.groups.get(*i).copied().flatten().unwrap_or(""))
                }
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex_scope() -> Scope {
        Scope {
            suffix: false,
            groups: 2,
            names: vec![("team".to_string(), 1)],
        }
    }

    fn captured<'a>(groups: &[Option<&'a str>]) -> Captured<'a> {
        Captured {
            repository: "team-a/app",
            suffix: "",
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn given_numbered_and_named_groups_when_rendered_then_both_resolve_to_captures() {
        let t = Template::parse("mirror/{team}/{2}", &regex_scope()).unwrap();
        let values = captured(&[Some("team-a/app"), Some("a"), Some("app")]);
        assert_eq!(t.render(&values), "mirror/a/app");
        assert_eq!(t.to_string(), "mirror/{team}/{2}");
    }

    #[test]
    fn given_optional_group_that_did_not_match_when_rendered_then_it_is_empty() {
        let t = Template::parse("x{1}y", &regex_scope()).unwrap();
        assert_eq!(t.render(&captured(&[Some("q"), None, None])), "xy");
    }

    #[test]
    fn given_prefix_scope_when_suffix_used_then_it_resolves_and_outside_prefix_it_does_not() {
        let prefix = Scope {
            suffix: true,
            ..Scope::default()
        };
        let t = Template::parse("{suffix}", &prefix).unwrap();
        let values = Captured {
            repository: "kuali-coeus",
            suffix: "coeus",
            groups: vec![],
        };
        assert_eq!(t.render(&values), "coeus");
        let err = Template::parse("{suffix}", &Scope::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown template variable {suffix} (available: {repository})"
        );
    }

    #[test]
    fn given_group_number_past_the_last_group_when_parsed_then_unknown_variable_lists_available() {
        let err = Template::parse("{3}", &regex_scope()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown template variable {3} (available: {repository}, {1}, {2}, {team})"
        );
        assert!(Template::parse("{0}", &regex_scope()).is_err());
        assert!(Template::parse("{01}", &regex_scope()).is_err());
    }

    #[test]
    fn given_unbalanced_braces_when_parsed_then_position_is_reported() {
        assert_eq!(
            Template::parse("a/{repository", &Scope::default()),
            Err(TemplateError::Unclosed { at: 3 })
        );
        assert_eq!(
            Template::parse("a}", &Scope::default()),
            Err(TemplateError::Unopened { at: 2 })
        );
        assert_eq!(
            Template::parse("{a{repository}}", &Scope::default()),
            Err(TemplateError::Unclosed { at: 1 })
        );
    }

    #[test]
    fn given_literals_that_no_name_allows_when_parsed_then_refused_at_load() {
        assert_eq!(
            Template::parse("Mirror/{repository}", &Scope::default()),
            Err(TemplateError::Character { ch: 'M' })
        );
        assert!(matches!(
            Template::parse("a//b", &Scope::default()),
            Err(TemplateError::InvalidName { .. })
        ));
        assert_eq!(
            Template::parse("", &Scope::default()),
            Err(TemplateError::Empty)
        );
        assert!(Template::parse("static-name", &Scope::default()).is_ok());
    }

    #[test]
    fn given_many_groups_when_listing_available_then_range_is_abbreviated() {
        let scope = Scope {
            suffix: false,
            groups: 12,
            names: vec![],
        };
        assert_eq!(scope.available(), "{repository}, {1}…{12}");
    }
}
