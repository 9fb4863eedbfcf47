//! Tag globs: `*` is any run of characters (also none), `?` exactly one, all
//! else literal. Deliberately smaller than shell globs: no classes, no
//! escapes, because tags cannot contain `[`, `]` or `\` anyway.

use std::fmt;

use serde::Serialize;

/// Longest pattern accepted; twice a tag's 300 so `*` padding still fits.
pub const MAX_GLOB_LEN: usize = 2 * crate::reference::MAX_TAG_LEN;

/// A validated tag glob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Glob {
    pattern: String,
}

/// Why a pattern was refused as a tag glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty glob")]
    Empty,
    #[error("glob longer than {MAX_GLOB_LEN} characters")]
    TooLong,
    #[error("only tag characters [A-Za-z0-9_.-] and the wildcards * and ? are allowed")]
    Character,
    #[error("can never match: tags start with a letter, digit or '_'")]
    NeverMatches,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.len() > MAX_GLOB_LEN {
            return Err(GlobError::TooLong);
        }
        let allowed =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?');
        if !pattern.bytes().all(allowed) {
            return Err(GlobError::Character);
        }
        // A leading '.' or '-' is legal in the alphabet but no tag can start with it:
        // such a filter is dead and certainly a mistake.
        if matches!(pattern.as_bytes()[0], b'.' | b'-') {
            return Err(GlobError::NeverMatches);
        }
        Ok(Glob {
            pattern: pattern.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Greedy match with one backtrack point (the last `*`): O(len(pattern) ×
    /// len(text)) at worst, never exponential, whatever the pattern.
    pub fn matches(&self, text: &str) -> bool {
        // Patterns are ASCII; comparing chars keeps `?` = one character even
        // for a non-ASCII text, which then simply fails on literals.
        let p = self.pattern.as_bytes();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == b'?' || char::from(c) == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    // Let the last `*` swallow one more character and retry.
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn given_star_when_matching_then_any_run_including_empty_matches() {
        assert!(glob("v*").matches("v"));
        assert!(glob("v*").matches("v1.2.3"));
        assert!(!glob("v*").matches("1.2.3"));
        assert!(glob("*-dirty").matches("1.0-dirty"));
        assert!(glob("*-dirty").matches("-dirty"));
        assert!(!glob("*-dirty").matches("1.0-dirty-2"));
        assert!(glob("*").matches(""));
        assert!(glob("a*b*c").matches("abc"));
        assert!(glob("a*b*c").matches("a-b-b-c"));
        assert!(!glob("a*b*c").matches("a-b-c-d"));
    }

    #[test]
    fn given_question_mark_when_matching_then_exactly_one_character_matches() {
        assert!(glob("v?").matches("v1"));
        assert!(!glob("v?").matches("v"));
        assert!(!glob("v?").matches("v12"));
        assert!(glob("??").matches("é1"));
    }

    #[test]
    fn given_no_wildcards_when_matching_then_whole_text_must_be_equal() {
        assert!(glob("latest").matches("latest"));
        assert!(!glob("latest").matches("latest2"));
        assert!(!glob("latest").matches("Latest"));
    }

    #[test]
    fn given_pathological_pattern_when_matching_then_it_finishes_quickly() {
        let p = glob(&"*a".repeat(100));
        let text = "a".repeat(99) + "b";
        assert!(!p.matches(&text));
    }

    #[test]
    fn given_invalid_patterns_when_parsed_then_each_says_why() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("v/*"), Err(GlobError::Character));
        assert_eq!(Glob::new("v[0-9]"), Err(GlobError::Character));
        assert_eq!(Glob::new("-rc*"), Err(GlobError::NeverMatches));
        assert!(Glob::new(&"a".repeat(600)).is_ok());
        assert_eq!(Glob::new(&"a".repeat(601)), Err(GlobError::TooLong));
        assert!(Glob::new("*-rc?").is_ok());
        assert!(Glob::new("_x").is_ok());
    }
}
