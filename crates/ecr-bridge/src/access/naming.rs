//! A user's repository name, exactly as Gen3's `ecr-access-job` builds it, so
//! that switching over renames nothing: `<prefix>/<escape(user_id)>`.

use std::fmt::Write;

use crate::reference::is_valid_ecr_repository_name;

/// Gen3's default repository prefix.
pub const DEFAULT_PREFIX: &str = "nextflow-approved";

/// Gen3's escaping: `[a-z0-9]` is kept; every other code point (upper case,
/// `-`, `.`, `@`, `_`, non-ASCII…) becomes `-` and its lowercase hex code
/// point, zero-padded to two digits. Nothing is lower-cased first.
pub fn escape(user_id: &str) -> String {
    let mut out = String::with_capacity(user_id.len() * 3);
    for c in user_id.chars() {
        if is_kept(c) {
            out.push(c);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "-{:02x}", c as u32);
        }
    }
    out
}

fn is_kept(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Why a user has no usable repository. Permanent: the same user id always
/// escapes to the same name, so retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("the user id is empty")]
    EmptyUserId,
    #[error("user {user_id:?}: repository name {repository:?} is not a valid ECR name: {reason}")]
    Invalid {
        user_id: String,
        repository: String,
        reason: String,
    },
}

/// `prefix/escape(user_id)`, checked against ECR's rules (2-256 characters,
/// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`).
pub fn repository_name(prefix: &str, user_id: &str) -> Result<String, NamingError> {
    if user_id.is_empty() {
        return Err(NamingError::EmptyUserId);
    }
    let escaped = escape(user_id);
    let name = format!("{prefix}/{escaped}");
    if is_valid_ecr_repository_name(&name) {
        return Ok(name);
    }
    let reason = if name.len() > 256 {
        format!("{} characters; ECR allows at most 256", name.len())
    } else if escaped.starts_with('-') {
        "it starts with '-' because the user id's first character is not in [a-z0-9]".to_string()
    } else {
        "it does not match ECR's repository name pattern".to_string()
    };
    Err(NamingError::Invalid {
        user_id: clip(user_id),
        repository: clip(&name),
        reason,
    })
}

/// The escaped user id alone, checked as one component of a repository
/// name (what `ecr-bridge escape` prints without a prefix).
pub fn escaped_name(user_id: &str) -> Result<String, NamingError> {
    if user_id.is_empty() {
        return Err(NamingError::EmptyUserId);
    }
    let escaped = escape(user_id);
    let reason = if escaped.len() > 256 {
        format!("{} characters; ECR allows at most 256", escaped.len())
    } else if escaped.starts_with('-') {
        "it starts with '-' because the user id's first character is not in [a-z0-9]".to_string()
    } else {
        return Ok(escaped);
    };
    Err(NamingError::Invalid {
        user_id: clip(user_id),
        repository: clip(&escaped),
        reason,
    })
}

/// The escaped part of `repository` when it sits directly under `prefix`.
pub fn escaped_part<'a>(prefix: &str, repository: &'a str) -> Option<&'a str> {
    repository
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|r| !r.is_empty() && !r.contains('/'))
}

/// Every user id whose escape is `escaped` (the escape is not injective:
/// `aN2d` and `a中` both give `a-4e2d`). Empty when no user id escapes to
/// it; `None` when there are more than `limit`.
///
/// The work is bounded by `limit` × `escaped.len()` whatever the text: which
/// suffixes can be read at all is worked out first, so the search never
/// enters a branch that dies later (a name like `a-4e2d-4e2d…-4e2d_x` has
/// 3ⁿ dead readings), and it keeps its own stack rather than recursing.
pub fn unescape_candidates(escaped: &str, limit: usize) -> Option<Vec<String>> {
    let b = escaped.as_bytes();
    let n = b.len();
    // readable[i]: some user id escapes to exactly b[i..].
    let mut readable = vec![false; n + 1];
    readable[n] = true;
    for i in (0..n).rev() {
        readable[i] = if is_kept(b[i] as char) {
            readable[i + 1]
        } else {
            escapes_at(b, i).any(|(_, next)| readable[next])
        };
    }
    let mut out = Vec::new();
    if !readable[0] {
        return Some(out);
    }
    let mut current = String::new();
    // (position, length of `current` to go back to, the character read before it)
    let mut stack: Vec<(usize, usize, Option<char>)> = vec![(0, 0, None)];
    while let Some((mut i, keep, read)) = stack.pop() {
        current.truncate(keep);
        current.extend(read);
        while i < n && is_kept(b[i] as char) {
            current.push(b[i] as char);
            i += 1;
        }
        if i == n {
            out.push(current.clone());
            if out.len() > limit {
                return None;
            }
            continue;
        }
        // readable[i] holds here, so b[i] is a '-' with at least one reading.
        let choices: Vec<(char, usize)> = escapes_at(b, i)
            .filter(|&(_, next)| readable[next])
            .collect();
        let base = current.len();
        for (c, next) in choices.into_iter().rev() {
            stack.push((next, base, Some(c)));
        }
    }
    Some(out)
}

/// The ways to read an escape (`-` and 2 to 6 hex digits) at `b[i]`: the
/// character and the position after it. None when `b[i]` is not `-`.
fn escapes_at(b: &[u8], i: usize) -> impl Iterator<Item = (char, usize)> + '_ {
    let hex_run = if b[i] == b'-' {
        b[i + 1..]
            .iter()
            .take(6)
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(*c))
            .count()
    } else {
        0
    };
    (2..=hex_run).filter_map(move |digits| {
        let hex = &b[i + 1..i + 1 + digits];
        // Only two-digit escapes are zero-padded.
        if digits > 2 && hex[0] == b'0' {
            return None;
        }
        let c = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)?;
        // A kept character would never have been escaped.
        (!is_kept(c)).then_some((c, i + 1 + digits))
    })
}

fn clip(s: &str) -> String {
    if s.chars().count() <= 300 {
        return s.to_string();
    }
    let mut out: String = s.chars().take(300).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_gen3_examples_when_escaped_then_byte_for_byte_the_same() {
        for (user, escaped) in [
            ("user1@username.com", "user1-40username-2ecom"),
            ("first_last@uchicago.edu", "first-5flast-40uchicago-2eedu"),
            ("jane-doe@x.io", "jane-2ddoe-40x-2eio"),
            ("josé@x.io", "jos-e9-40x-2eio"),
            ("中", "-4e2d"),
            ("User@x.org", "-55ser-40x-2eorg"),
            ("a\u{1}b", "a-01b"),
            ("\u{1F600}", "-1f600"),
        ] {
            assert_eq!(escape(user), escaped, "escape({user:?})");
        }
    }

    #[test]
    fn given_a_user_when_naming_the_repository_then_prefix_slash_escape() {
        assert_eq!(
            repository_name(DEFAULT_PREFIX, "user1@username.com").unwrap(),
            "nextflow-approved/user1-40username-2ecom"
        );
        assert_eq!(repository_name("a/b", "x").unwrap(), "a/b/x");
    }

    #[test]
    fn given_a_capitalised_user_when_naming_then_a_permanent_error_says_why() {
        let e = repository_name(DEFAULT_PREFIX, "User@x.org").unwrap_err();
        let NamingError::Invalid {
            repository, reason, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(repository, "nextflow-approved/-55ser-40x-2eorg");
        assert!(reason.contains("starts with '-'"), "{reason}");
        assert!(e.to_string().contains("User@x.org"), "{e}");
    }

    #[test]
    fn given_a_very_long_user_when_naming_then_the_length_is_the_reason_and_the_error_stays_short()
    {
        let long = "a".repeat(240);
        let e = repository_name(DEFAULT_PREFIX, &long).unwrap_err();
        assert!(e.to_string().contains("at most 256"), "{e}");
        let huge = "é".repeat(100_000);
        let e = repository_name(DEFAULT_PREFIX, &huge).unwrap_err();
        assert!(e.to_string().len() < 2000);
        // Exactly at the limit is fine: 18 + 238 = 256.
        assert!(repository_name(DEFAULT_PREFIX, &"a".repeat(238)).is_ok());
        assert!(repository_name(DEFAULT_PREFIX, &"a".repeat(239)).is_err());
    }

    #[test]
    fn given_an_empty_user_when_naming_then_refused() {
        assert_eq!(
            repository_name(DEFAULT_PREFIX, ""),
            Err(NamingError::EmptyUserId)
        );
        assert_eq!(escaped_name(""), Err(NamingError::EmptyUserId));
    }

    #[test]
    fn given_escaped_names_alone_when_checked_then_only_leading_dash_and_length_fail() {
        assert_eq!(escaped_name("a").unwrap(), "a");
        assert!(escaped_name("User").is_err());
        assert!(escaped_name(&"b".repeat(257)).is_err());
    }

    #[test]
    fn given_a_repository_when_taking_the_escaped_part_then_only_direct_children_of_the_prefix() {
        assert_eq!(
            escaped_part("nextflow-approved", "nextflow-approved/u-40x"),
            Some("u-40x")
        );
        assert_eq!(
            escaped_part("nextflow-approved", "nextflow-approvedx/u"),
            None
        );
        assert_eq!(
            escaped_part("nextflow-approved", "nextflow-approved/a/b"),
            None
        );
        assert_eq!(escaped_part("nextflow-approved", "other/u"), None);
    }

    #[test]
    fn given_an_ambiguous_escape_when_unescaped_then_every_colliding_user_is_a_candidate() {
        let mut c = unescape_candidates("a-4e2d", 16).unwrap();
        c.sort();
        // U+04E2 followed by a kept `d` reads the same way.
        assert_eq!(c, ["aN2d", "a\u{4e2}d", "a中"]);
        let c = unescape_candidates("user1-40username-2ecom", 16).unwrap();
        assert!(c.contains(&"user1@username.com".to_string()), "{c:?}");
        assert!(c.iter().all(|u| escape(u) == "user1-40username-2ecom"));
    }

    #[test]
    fn given_names_no_escape_produces_when_unescaped_then_no_candidates() {
        for name in ["a.b", "a_b", "A", "a-4", "a-", "-g1"] {
            assert_eq!(unescape_candidates(name, 16), Some(vec![]), "{name}");
        }
    }

    #[test]
    fn given_a_limit_when_too_many_readings_then_none() {
        let many = "-2eab".repeat(8);
        assert_eq!(unescape_candidates(&many, 4), None);
    }

    #[test]
    fn given_a_name_with_exponentially_many_dead_readings_when_unescaped_then_it_answers_at_once() {
        // Each `-4e2d` reads three ways; the `_` at the end kills them all.
        // A valid ECR name under the prefix: anyone who can create one must
        // not be able to stall the full reconcile.
        let name = format!("a{}_x", "-4e2d".repeat(50));
        let started = std::time::Instant::now();
        assert_eq!(unescape_candidates(&name, 1024), Some(vec![]));
        // Readable, but far more readings than the limit: stops at the limit.
        assert_eq!(
            unescape_candidates(&format!("a{}", "-4e2d".repeat(50)), 1024),
            None
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn given_huge_names_when_unescaped_then_no_stack_overflow() {
        let kept = "a".repeat(1_000_000);
        assert_eq!(unescape_candidates(&kept, 4), Some(vec![kept.clone()]));
        let dots = "-2e".repeat(300_000);
        let c = unescape_candidates(&dots, 4).unwrap();
        assert_eq!(c, [".".repeat(300_000)]);
    }

    #[test]
    fn given_assorted_user_ids_when_escaped_then_unescaping_finds_them_again() {
        for user in [
            "first_last@uchicago.edu",
            "josé@x.io",
            "ÅSA.Öberg+ci@example.org",
            "x\u{10FFFF}\u{7f}",
            "12ab-CD",
        ] {
            let candidates = unescape_candidates(&escape(user), 256).unwrap();
            assert!(
                candidates.contains(&user.to_string()),
                "{user}: {candidates:?}"
            );
        }
    }
}
