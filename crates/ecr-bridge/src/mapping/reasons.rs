//! Why a rule did not take a push: its `match` refused the name, or its tag
//! filter the tag. Produced by the schema's matchers, carried by decisions.

use serde::Serialize;

/// Why a matching rule's tag filter refused a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TagFilterReason {
    #[error("tag {tag:?} matches no include pattern ({})", quoted_list(.include))]
    NotIncluded { tag: String, include: Vec<String> },
    #[error("tag {tag:?} excluded by {pattern:?}")]
    Excluded { tag: String, pattern: String },
    #[error("untagged pushes off (tags.untagged is false)")]
    UntaggedOff,
}

/// Include lists can hold 100 patterns; a message names the first few.
fn quoted_list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut list = items
        .iter()
        .take(SHOWN)
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        list.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    list
}

/// Why a rule's `match` did not take a name. Values are cut to about 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    #[error("name is not {exact:?}")]
    NotEqual { exact: String },
    #[error("name does not start with {prefix:?}")]
    NoPrefix { prefix: String },
    #[error("name does not match regex {regex:?} (whole name)")]
    NoRegexMatch { regex: String },
}
