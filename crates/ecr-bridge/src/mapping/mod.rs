//! The mapping config: which pushed repositories replicate, and under which
//! names, to which accounts and regions.
//!
//! The config is a JSON document (from SSM Parameter Store or an environment
//! variable) checked completely at load time — types, unknown fields,
//! account and region shapes, role ARNs, globs, regexes and every template
//! against its rule's match kind — so that at event time the only thing left
//! that can go wrong is a rendered name that ECR would refuse or that leaves
//! its destination's `confine_to`, which depends on the source name. See
//! [`MappingConfig::from_json`] for the schema.

mod confine;
mod decision;
mod error;
mod glob;
mod loops;
mod parse;
mod quote;
mod reasons;
mod schema;
mod settings;
mod template;
mod tree;

#[cfg(test)]
mod tests;

pub use decision::{
    Decision, ImageDecision, InvalidTargetName, Replication, RuleVerdict, Target,
    TargetNameProblem, Verdict,
};
pub use error::{ConfigError, FieldError, Problem};
pub use glob::{Glob, GlobError};
pub use reasons::{Mismatch, TagFilterReason};
pub use schema::{
    rule_label, Destination, Encryption, NameRegex, RepositoryMatch, RepositorySettings, Rule,
    SourceRegistry, TagFilter, TagMutability,
};
pub use template::{Template, TemplateError};

use crate::ids::{AccountId, Region};
use crate::reference::is_valid_ecr_repository_name;
use quote::truncated;
use template::Captured;

/// Largest document accepted. Far above what SSM (8 KiB) or Lambda's
/// environment (4 KiB) can hold today; it bounds the work a hostile
/// document can cause, wherever the text comes from.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
pub const MAX_RULES: usize = 500;
/// Source registries of a hub (`sources`).
pub const MAX_SOURCES: usize = 200;
pub const MAX_DESTINATIONS: usize = 20;
/// Per `include` or `exclude` list.
pub const MAX_GLOBS: usize = 100;
/// Rule names and `prefix`es.
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_REGEX_LEN: usize = 1000;
/// Bounds a compiled regex's memory and so its per-name matching time,
/// which every push pays for every regex rule before the winner.
const REGEX_SIZE_LIMIT: usize = 64 * 1024;
const REGEX_NEST_LIMIT: u32 = 50;

/// A validated mapping config.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    rules: Vec<Rule>,
    /// Empty: the document names none, and takes events of any registry.
    sources: Vec<SourceRegistry>,
}

/// An event's registry is not among the document's sources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{account}/{region} is not among the mapping's sources ({listed}): add it to \"sources\" to replicate its images")]
pub struct NotASource {
    pub account: String,
    pub region: String,
    /// The sources listed, shortened past a few.
    pub listed: String,
}

impl MappingConfig {
    /// Parses and checks a config document:
    ///
    /// ```json
    /// { "version": 1,
    ///   "source": { "account": "111111111111", "region": "us-east-1" },
    ///   // or, for a hub taking the events of several accounts (not both):
    ///   // "sources": [ { "account": "333333333333", "region": "us-east-1",
    ///   //                "role_arn": "arn:aws:iam::333333333333:role/ecr-bridge-source-read",
    ///   //                "external_id": "ecr-bridge-hub" } ],
    ///   "rules": [ { "name": "kuali",
    ///                "match": { "prefix": "kuali-" },
    ///                "destinations": [ { "account": "222222222222", "region": "us-east-1",
    ///                                    "role_arn": "arn:aws:iam::222222222222:role/push",
    ///                                    "external_id": "kuali-sync",
    ///                                    "repository": "{suffix}",
    ///                                    "confine_to": "coeus" } ],
    ///                "tags": { "include": ["v*"], "exclude": ["*-dirty"], "untagged": true },
    ///                "create_repository": { "tag_mutability": "IMMUTABLE", "scan_on_push": true,
    ///                                       "encryption": { "type": "KMS", "kms_key": "alias/x" } },
    ///                "propagate_deletes": false,
    ///                "copy_referrers": false } ] }
    /// ```
    ///
    /// On failure every problem found is reported, each with its field's path.
    pub fn from_json(text: &str) -> Result<MappingConfig, ConfigError> {
        parse::parse(text)
    }

    /// The registries the document says its events come from (`source`
    /// or `sources`); empty when it says nothing.
    pub fn sources(&self) -> &[SourceRegistry] {
        &self.sources
    }

    /// Whether the document lists `account` in `region` among its sources.
    pub fn lists_source(&self, account: &AccountId, region: &Region) -> bool {
        self.sources
            .iter()
            .any(|s| &s.account == account && &s.region == region)
    }

    /// The source entry for an event of `account` in `region`: `Ok(None)`
    /// when the document lists no sources (every registry's events are
    /// taken), an error when it lists them and not this one.
    pub fn source_for(
        &self,
        account: &AccountId,
        region: &Region,
    ) -> Result<Option<&SourceRegistry>, NotASource> {
        if self.sources.is_empty() {
            return Ok(None);
        }
        match self
            .sources
            .iter()
            .find(|s| &s.account == account && &s.region == region)
        {
            Some(s) => Ok(Some(s)),
            None => {
                const SHOWN: usize = 5;
                let mut listed: Vec<String> = self
                    .sources
                    .iter()
                    .take(SHOWN)
                    .map(|s| format!("{}/{}", s.account, s.region))
                    .collect();
                if self.sources.len() > SHOWN {
                    listed.push(format!("and {} more", self.sources.len() - SHOWN));
                }
                Err(NotASource {
                    account: account.to_string(),
                    region: region.to_string(),
                    listed: listed.join(", "),
                })
            }
        }
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What to do with a push of `repository` with `tag` (`None`: pushed by
    /// digest only). The first rule whose `match` takes the name decides,
    /// even if its tag filter then drops the push.
    pub fn decide(&self, repository: &str, tag: Option<&str>) -> Decision {
        for rule in &self.rules {
            if let Ok(values) = rule.matcher.capture(repository) {
                return match outcome(rule, &values, tag) {
                    Ok(replication) => Decision::Replicate(replication),
                    Err(reason) => Decision::TagFiltered {
                        rule: rule.name.clone(),
                        rule_index: rule.index,
                        reason,
                    },
                };
            }
        }
        Decision::NoMatchingRule
    }

    /// What to do with an image of `repository` carrying `tags` (none: an
    /// untagged image, or a push by digest): the first rule whose `match`
    /// takes the name decides, and its tag filter picks the tags that
    /// replicate. The image replicates when one tag passes (or, untagged,
    /// when the rule takes untagged pushes); otherwise the first refusal
    /// says why. Agrees with [`MappingConfig::decide`] tag by tag.
    pub fn decide_image(&self, repository: &str, tags: &[String]) -> ImageDecision {
        let Some((rule, values)) = self
            .rules
            .iter()
            .find_map(|r| r.matcher.capture(repository).ok().map(|v| (r, v)))
        else {
            return ImageDecision::NoMatchingRule;
        };
        let filtered = |reason| ImageDecision::TagFiltered {
            rule: rule.name.clone(),
            rule_index: rule.index,
            reason,
        };
        let mut refused = None;
        let wanted: Vec<String> = if tags.is_empty() {
            if let Err(reason) = rule.tags.admits(None) {
                return filtered(reason);
            }
            Vec::new()
        } else {
            tags.iter()
                .filter(|t| match rule.tags.admits(Some(t)) {
                    Ok(()) => true,
                    Err(reason) => {
                        refused.get_or_insert(reason);
                        false
                    }
                })
                .cloned()
                .collect()
        };
        match refused {
            Some(reason) if wanted.is_empty() => filtered(reason),
            _ => ImageDecision::Replicate {
                replication: replication(rule, &values),
                tags: wanted,
            },
        }
    }

    /// The rule that takes `repository` and where it sends it, whatever the
    /// tag: for planning and backfill, which apply tag filters per image.
    pub fn route(&self, repository: &str) -> Option<Replication> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matcher.capture(repository).is_ok())?;
        let values = rule.matcher.capture(repository).ok()?;
        Some(replication(rule, &values))
    }

    /// Every rule's verdict for the push, in order: why each did not match,
    /// which one decided and how, and which would have matched but were
    /// shadowed. Agrees with [`MappingConfig::decide`].
    pub fn explain(&self, repository: &str, tag: Option<&str>) -> Vec<RuleVerdict> {
        let mut winner: Option<&Rule> = None;
        self.rules
            .iter()
            .map(|rule| {
                let verdict = match (rule.matcher.capture(repository), winner) {
                    (Err(reason), _) => Verdict::NotMatched { reason },
                    (Ok(_), Some(w)) => Verdict::Shadowed {
                        by_rule_index: w.index,
                        by_rule: w.name.clone(),
                    },
                    (Ok(values), None) => {
                        winner = Some(rule);
                        match outcome(rule, &values, tag) {
                            Ok(r) => Verdict::Replicate(r),
                            Err(reason) => Verdict::TagFiltered { reason },
                        }
                    }
                };
                RuleVerdict {
                    rule_index: rule.index,
                    rule: rule.name.clone(),
                    verdict,
                }
            })
            .collect()
    }
}

/// The matched rule's answer for this push.
fn outcome(
    rule: &Rule,
    values: &Captured<'_>,
    tag: Option<&str>,
) -> Result<Replication, TagFilterReason> {
    rule.tags.admits(tag)?;
    Ok(replication(rule, values))
}

/// The rule's destinations rendered for the captured name.
fn replication(rule: &Rule, values: &Captured<'_>) -> Replication {
    let destinations = rule
        .destinations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let rendered = d.repository.render(values);
            let problem = if !is_valid_ecr_repository_name(&rendered) {
                Some(TargetNameProblem::NotAnEcrName)
            } else {
                d.confine_to
                    .as_ref()
                    .filter(|prefix| !confine::admits(prefix, &rendered))
                    .map(|prefix| TargetNameProblem::OutsideConfinement {
                        confine_to: prefix.clone(),
                    })
            };
            let repository = match problem {
                None => Ok(rendered),
                Some(problem) => Err(InvalidTargetName {
                    rule: rule.name.clone(),
                    destination_index: i,
                    template: d.repository.to_string(),
                    rendered: truncated(&rendered),
                    problem,
                }),
            };
            Target {
                access: d.access.clone(),
                repository,
            }
        })
        .collect();
    Replication {
        rule: rule.name.clone(),
        rule_index: rule.index,
        destinations,
        create_repository: rule.create_repository.clone(),
        registry_creates_repository: rule.registry_creates_repository,
        propagate_deletes: rule.propagate_deletes,
        copy_referrers: rule.copy_referrers,
    }
}
