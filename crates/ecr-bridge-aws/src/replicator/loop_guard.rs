//! The run-time loop guard. ECR sends an `ECR Image Action` for every push,
//! ours included: a copy into the source action's own registry under a name
//! a rule routes would be replicated again, forever (or until names reach
//! 256 characters). The mapping refuses such destinations at load time only
//! where it can decide it (and only when it states its source); this catches
//! the rest, regex rules above all, before anything is pushed.

use ecr_bridge::ids::{AccountId, Region};
use ecr_bridge::mapping::{rule_label, Decision, MappingConfig, Target};

use crate::image_action::ImageAction;

/// A destination refused because its copy would re-trigger replication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "loop: target {account}/{region}/{repository} is itself routed by rule {rule}; replicating would re-trigger replication (ECR sends an event for this push too), so nothing was copied: use another account, region or repository name"
)]
pub struct LoopDetected {
    pub account: AccountId,
    pub region: Region,
    pub repository: String,
    /// Label of the rule that would route the copy.
    pub rule: String,
}

/// `Some` when `target` is in a registry whose events come back (the
/// action's own, or any of the mapping's `sources`: a hub hears every
/// spoke) and a rule would replicate what the copy pushes there: the image
/// by digest (every copy pushes manifests by digest) or any of the `tags`
/// it sets.
pub fn check(
    config: &MappingConfig,
    action: &ImageAction,
    target: &Target,
    tags: &[String],
) -> Option<LoopDetected> {
    let (account, region) = (&target.access.account, &target.access.region);
    let own = *account == action.account && *region == action.region;
    let listed = config.lists_source(account, region);
    if !own && !listed {
        return None;
    }
    let repository = target.repository.as_ref().ok()?;
    let pushes = std::iter::once(None).chain(tags.iter().map(|t| Some(t.as_str())));
    for tag in pushes {
        if let Decision::Replicate(r) = config.decide(repository, tag) {
            return Some(LoopDetected {
                account: target.access.account.clone(),
                region: target.access.region.clone(),
                repository: repository.clone(),
                rule: rule_label(r.rule_index, &r.rule),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_action::ActionKind;

    const HOME: &str = "123456789012";

    fn config() -> MappingConfig {
        MappingConfig::from_json(
            r#"{ "rules": [
                { "name": "mirror", "match": { "regex": "app-(.+)" },
                  "destinations": [ { "account": "123456789012", "region": "us-east-1", "repository": "app-mirror-{1}" },
                                    { "account": "222222222222", "region": "us-east-1", "repository": "app-{1}" },
                                    { "account": "123456789012", "region": "eu-west-1", "repository": "app-{1}" } ],
                  "tags": { "include": ["v*"], "untagged": false } },
                { "name": "kuali", "match": { "prefix": "kuali-" },
                  "destinations": [ { "account": "123456789012", "region": "us-east-1", "repository": "coeus/{suffix}" } ] }
            ] }"#,
        )
        .unwrap()
    }

    fn action(repository: &str) -> ImageAction {
        ImageAction {
            account: HOME.parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            repository: repository.parse().unwrap(),
            digest: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
            tags: vec!["v1".into()],
            kind: ActionKind::Push,
        }
    }

    fn targets(config: &MappingConfig, repository: &str) -> Vec<Target> {
        match config.decide(repository, Some("v1")) {
            Decision::Replicate(r) => r.destinations,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_a_regex_target_in_the_source_registry_that_the_rule_routes_when_checked_then_a_loop_naming_target_and_rule(
    ) {
        let config = config();
        let targets = targets(&config, "app-web");
        let found = check(&config, &action("app-web"), &targets[0], &["v1".into()]).unwrap();
        assert_eq!(found.repository, "app-mirror-web");
        assert_eq!(
            found.to_string(),
            "loop: target 123456789012/us-east-1/app-mirror-web is itself routed by rule rules[0] (mirror); \
             replicating would re-trigger replication (ECR sends an event for this push too), so nothing \
             was copied: use another account, region or repository name"
        );
    }

    /// No loop for the target at `index` of `repository`'s destinations when
    /// `tags` are pushed there.
    fn assert_no_loop(repository: &str, index: usize, tags: &[&str]) {
        let config = config();
        let targets = targets(&config, repository);
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            check(&config, &action(repository), &targets[index], &tags),
            None,
            "{repository} -> destination {index} with tags {tags:?}"
        );
    }

    #[test]
    fn given_a_hub_whose_regex_target_is_in_another_spoke_when_checked_then_a_loop_through_that_spoke(
    ) {
        // Given spokes 123456789012 and 222222222222: a copy from the first
        // into the second is forwarded back to the hub by the second's rule.
        let config = MappingConfig::from_json(
            r#"{ "sources": [ { "account": "123456789012", "region": "us-east-1" },
                              { "account": "222222222222", "region": "us-east-1" } ],
                 "rules": [ { "match": { "regex": "app-(.+)" },
                   "destinations": [ { "account": "222222222222", "region": "us-east-1", "repository": "app-{1}-copy" } ] } ] }"#,
        )
        .unwrap();
        let targets = targets(&config, "app-web");
        let found = check(&config, &action("app-web"), &targets[0], &["v1".into()])
            .expect("a loop through the other spoke");
        assert_eq!(found.repository, "app-web-copy");
    }

    #[test]
    fn given_targets_in_another_account_or_region_when_checked_then_no_loop() {
        assert_no_loop("app-web", 1, &["v1"]);
        assert_no_loop("app-web", 2, &["v1"]);
    }

    #[test]
    fn given_a_target_whose_pushes_the_tag_filter_refuses_when_checked_then_no_loop() {
        // rules[0] takes "app-mirror-web" but only for v* tags and never untagged.
        assert_no_loop("app-web", 0, &["latest"]);
    }

    #[test]
    fn given_a_target_in_the_source_registry_no_rule_matches_when_checked_then_no_loop() {
        assert_no_loop("kuali-coeus", 0, &["v1"]);
    }
}
