//! ECR's tags of up to 300 characters in front of docker-registry, whose tag
//! grammar (`[\w][\w.-]{0,127}`) stops at 128.
//!
//! With [`ProxyOptions::long_tags`](crate::ProxyOptions::long_tags) the
//! [`FaultProxy`](crate::FaultProxy) rewrites a manifest reference that is a
//! tag of 129–300 characters (GET, HEAD, PUT, DELETE) to a deterministic
//! alias before forwarding it: `lt-` and the first 40 hex digits of the
//! tag's SHA-256, a valid short tag. `GET /v2/<repo>/tags/list` answers map
//! the aliases this front made back to the long names. A tag over 300
//! characters gets ECR's 400 `TAG_INVALID` and is not forwarded.
//!
//! The front remembers the aliases it made: a tag list read through another
//! front (or straight from the registry) shows the aliases. Pagination
//! (`?last=`) is by alias, so long tags sort by their hash.

use serde_json::Value;

use super::Answer;
use crate::fault_proxy::{bump, split_repo, Shared};
use crate::wire::{self, Head, Upstream};

/// Longest tag docker-registry accepts.
pub(crate) const REGISTRY_MAX_TAG: usize = 128;
/// Longest tag ECR accepts.
pub(crate) const ECR_MAX_TAG: usize = 300;

/// The short tag standing in for `tag` upstream.
pub fn long_tag_alias(tag: &str) -> String {
    format!("lt-{}", &crate::sha256_hex(tag.as_bytes())[..40])
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]*`: the OCI tag grammar without its length.
fn tag_grammar(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Shared {
    /// Rewrites a long tag in a manifest path to its alias (remembering
    /// it), or refuses a tag over ECR's limit. None: go on.
    pub(crate) fn alias_long_tag(&self, head: &mut Head) -> Option<Answer> {
        if !self.opts.long_tags {
            return None;
        }
        let path = head.path().to_string();
        let (repo, rest) = split_repo(&path)?;
        let reference = rest.strip_prefix("manifests/")?;
        // A digest (`algorithm:hex`) or a tag docker-registry takes as it is.
        if reference.contains(':') || reference.len() <= REGISTRY_MAX_TAG {
            return None;
        }
        if reference.len() > ECR_MAX_TAG {
            bump(&self.counters.long_tags_refused);
            let msg = format!(
                "Invalid parameter at 'imageTag' failed to satisfy constraint: 'Member must have length less than or equal to {ECR_MAX_TAG}' (got {} characters)",
                reference.len()
            );
            return Some(Answer::error("400 Bad Request", "TAG_INVALID", &msg));
        }
        if !tag_grammar(reference) {
            // Not a tag at all: the registry refuses it as it would.
            return None;
        }
        let alias = long_tag_alias(reference);
        self.ecr
            .long_tags
            .lock()
            .expect("long tags")
            .insert(alias.clone(), reference.to_string());
        let query = head
            .target
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        head.target = format!("/v2/{repo}/manifests/{alias}{query}");
        bump(&self.counters.long_tags_aliased);
        None
    }

    /// A tag list from upstream with this front's aliases turned back into
    /// the long tags they stand for.
    pub(crate) fn unalias_tag_list(&self, head: &Head, resp: Upstream) -> Upstream {
        if !self.opts.long_tags || head.method != "GET" {
            return resp;
        }
        if split_repo(head.path()).map(|(_, rest)| rest) != Some("tags/list") {
            return resp;
        }
        let aliases = self.ecr.long_tags.lock().expect("long tags").clone();
        if aliases.is_empty() {
            return resp;
        }
        let head_text = String::from_utf8_lossy(&resp.head).into_owned();
        let chunked = head_text.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            match wire::dechunk(&resp.body) {
                Some(b) => b,
                None => return resp,
            }
        } else {
            resp.body.clone()
        };
        let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else {
            return resp;
        };
        let mut changed = false;
        for t in doc["tags"].as_array_mut().into_iter().flatten() {
            if let Some(long) = t.as_str().and_then(|s| aliases.get(s)) {
                *t = Value::from(long.clone());
                changed = true;
            }
        }
        if !changed {
            return resp;
        }
        let body = serde_json::to_vec(&doc).expect("tag list to JSON");
        Upstream {
            head: with_length(&head_text, body.len()),
            body,
        }
    }
}

/// `head` (ending in an empty line) with its framing headers replaced by
/// `Content-Length: len`.
fn with_length(head: &str, len: usize) -> Vec<u8> {
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "content-length" && name != "transfer-encoding" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_long_tags_when_aliased_then_the_alias_is_a_short_valid_tag_fixed_by_the_name() {
        let tag = "a".repeat(300);
        let alias = long_tag_alias(&tag);
        assert_eq!(alias, long_tag_alias(&tag));
        assert_ne!(alias, long_tag_alias(&"a".repeat(299)));
        assert_eq!(alias.len(), 43);
        assert!(tag_grammar(&alias) && alias.starts_with("lt-"));
        assert!(!tag_grammar(".x") && !tag_grammar("a/b") && !tag_grammar(""));
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        assert_eq!(
            String::from_utf8(with_length(head, 7)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 7\r\n\r\n"
        );
    }
}
