//! What the config says about one push: [`Decision`] per tag,
//! [`ImageDecision`] for an image and all its tags (the replicator, plan and
//! backfill), [`RuleVerdict`]s for `plan`, which shows every rule's part in it.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::confine;
use super::quote::shown;
use super::reasons::{Mismatch, TagFilterReason};
use super::schema::{rule_label, RepositorySettings};
use crate::ids::RegistryAccess;

/// What to do with one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    NoMatchingRule,
    /// A rule matched the repository but its tag filter refused this push.
    /// Later rules are not tried: the first match decides.
    TagFiltered {
        rule: String,
        rule_index: usize,
        reason: TagFilterReason,
    },
    Replicate(Replication),
}

impl fmt::Display for Decision {
    // For the replicator's log line about a push.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::NoMatchingRule => f.write_str("no rule matches the repository"),
            Decision::TagFiltered {
                rule,
                rule_index,
                reason,
            } => write!(f, "{} matched, but {reason}", rule_label(*rule_index, rule)),
            Decision::Replicate(r) => write!(
                f,
                "{} matched, replicates to {}",
                rule_label(r.rule_index, &r.rule),
                TargetList(&r.destinations)
            ),
        }
    }
}

/// What to do with one image and its tags ([`super::MappingConfig::decide_image`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDecision {
    NoMatchingRule,
    /// The rule that takes the repository refuses every tag of the image
    /// (or, untagged, untagged pushes): the first refusal.
    TagFiltered {
        rule: String,
        rule_index: usize,
        reason: TagFilterReason,
    },
    /// The image replicates, with these of its tags (in the order given).
    Replicate {
        replication: Replication,
        tags: Vec<String>,
    },
}

struct TargetList<'a>(&'a [Target]);

impl fmt::Display for TargetList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// A matched rule's instructions for this push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replication {
    pub rule: String,
    pub rule_index: usize,
    pub destinations: Vec<Target>,
    /// `None`: a missing target repository fails the copy.
    pub create_repository: Option<RepositorySettings>,
    /// The registry creates missing repositories (creation templates).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub registry_creates_repository: bool,
    pub propagate_deletes: bool,
    pub copy_referrers: bool,
}

impl Replication {
    /// Destinations whose name rendered invalid for this source name.
    pub fn invalid_targets(&self) -> impl Iterator<Item = &InvalidTargetName> {
        self.destinations
            .iter()
            .filter_map(|t| t.repository.as_ref().err())
    }
}

/// One copy to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The destination's account and region, and the role to push through.
    pub access: RegistryAccess,
    /// The rendered repository name; an error when the template, filled with
    /// this source name's values, is not a valid ECR name or falls outside
    /// the destination's `confine_to`. Other destinations of the same rule
    /// are unaffected.
    pub repository: Result<String, InvalidTargetName>,
}

impl Serialize for Target {
    // `repository` when it rendered, else `repository_error`: a plan printed
    // as JSON stays flat and readable.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Target", 5)?;
        st.serialize_field("account", &self.access.account)?;
        st.serialize_field("region", &self.access.region)?;
        if let Some(r) = self.access.role_arn() {
            st.serialize_field("role_arn", r)?;
        }
        if let Some(e) = self.access.external_id() {
            st.serialize_field("external_id", e)?;
        }
        match &self.repository {
            Ok(name) => st.serialize_field("repository", name)?,
            Err(e) => st.serialize_field("repository_error", &e.to_string())?,
        }
        st.end()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.access.account, self.access.region)?;
        match &self.repository {
            Ok(name) => f.write_str(name),
            Err(e) => write!(f, "<{e}>"),
        }
    }
}

/// A destination template rendered to a name this destination cannot take.
/// It depends on the source name, so it is a per-event error, not a config
/// one; other destinations of the rule are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "rule {} destinations[{destination_index}]: repository template {} gave {rendered:?}, {problem}",
    shown(.rule),
    shown(.template)
)]
pub struct InvalidTargetName {
    pub rule: String,
    pub destination_index: usize,
    pub template: String,
    /// Cut to about 100 characters.
    pub rendered: String,
    pub problem: TargetNameProblem,
}

/// What is wrong with a rendered target name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetNameProblem {
    #[error("not a valid ECR repository name")]
    NotAnEcrName,
    /// A valid name, but outside the destination's `confine_to`: a template
    /// value (a `/` in `{suffix}`, say) carried it out of its prefix.
    #[error(
        "outside the destination's confine_to {} ({}), so nothing is pushed there",
        shown(.confine_to),
        confine::explained(.confine_to)
    )]
    OutsideConfinement { confine_to: String },
}

/// One rule's part in the decision for a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleVerdict {
    pub rule_index: usize,
    pub rule: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// This rule decides, and the push replicates.
    Replicate(Replication),
    /// This rule decides, and the push is dropped.
    TagFiltered {
        reason: TagFilterReason,
    },
    NotMatched {
        reason: Mismatch,
    },
    /// Would match, but an earlier rule already did.
    Shadowed {
        by_rule_index: usize,
        by_rule: String,
    },
}

impl fmt::Display for RuleVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", rule_label(self.rule_index, &self.rule))?;
        match &self.verdict {
            Verdict::Replicate(r) => {
                write!(f, "matched, replicates to {}", TargetList(&r.destinations))
            }
            Verdict::TagFiltered { reason } => write!(f, "matched, but {reason}"),
            Verdict::NotMatched { reason } => write!(f, "not matched: {reason}"),
            Verdict::Shadowed {
                by_rule_index,
                by_rule,
            } => write!(
                f,
                "shadowed by an earlier rule: {}",
                rule_label(*by_rule_index, by_rule)
            ),
        }
    }
}
