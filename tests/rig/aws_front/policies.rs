//! What ECR checks in `SetRepositoryPolicy` and moto does not: the
//! principals (a closed or never-existing account is refused with
//! `InvalidParameterException`, not saying which) and the length of
//! `policyText` (10,240 characters, then `ValidationException`).

use std::collections::BTreeSet;

use serde_json::Value;

/// ECR's answer to a policy naming a principal it does not accept.
pub(crate) const INVALID_POLICY_MESSAGE: &str =
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'";

/// What ECR checks in `SetRepositoryPolicy` and moto does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyRules {
    /// Accounts whose principals ECR refuses: a policy naming any of them
    /// (as `arn:…:iam::<account>:…` or a bare id) is refused whole.
    pub refused_accounts: BTreeSet<String>,
    /// The longest `policyText` accepted (ECR: 10,240 characters).
    pub max_policy_chars: Option<usize>,
}

impl PolicyRules {
    /// ECR's length limit and these refused accounts.
    pub(crate) fn ecr(refused_accounts: &[&str]) -> Self {
        PolicyRules {
            refused_accounts: refused_accounts.iter().map(|a| a.to_string()).collect(),
            max_policy_chars: Some(10_240),
        }
    }

    /// The error ECR would answer for this `SetRepositoryPolicy` body.
    pub(crate) fn refusal(&self, body: &[u8]) -> Option<(Refusal, String)> {
        let request: Value = serde_json::from_slice(body).ok()?;
        let text = request["policyText"].as_str()?;
        if let Some(max) = self.max_policy_chars {
            let length = text.chars().count();
            if length > max {
                // AWS's answer to a request member over its length constraint.
                return Some((
                    Refusal::TooLong,
                    format!("1 validation error detected: Value at 'policyText' failed to satisfy constraint: Member must have length less than or equal to {max}"),
                ));
            }
        }
        let policy: Value = serde_json::from_str(text).ok()?;
        let statements = match &policy["Statement"] {
            Value::Array(items) => items.clone(),
            one @ Value::Object(_) => vec![one.clone()],
            _ => Vec::new(),
        };
        let refused = statements
            .iter()
            .flat_map(|s| principal_accounts(&s["Principal"]))
            .any(|a| self.refused_accounts.contains(&a));
        refused.then(|| (Refusal::Principal, INVALID_POLICY_MESSAGE.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Principal,
    TooLong,
}

/// The account ids an IAM `Principal` names.
fn principal_accounts(principal: &Value) -> Vec<String> {
    let aws = match principal {
        Value::Object(p) => p.get("AWS").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let list = match aws {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|p| match p.split_once(":iam::") {
            Some((_, rest)) => rest.split(':').next().map(str::to_string),
            None => (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())).then_some(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_policy(policy: Value) -> Vec<u8> {
        serde_json::json!({"repositoryName": "r", "policyText": policy.to_string()})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn given_a_refused_account_when_a_policy_names_it_then_refused_as_ecr_does_and_others_pass() {
        let rules = PolicyRules::ecr(&["999999999999"]);
        let naming = |principal: Value| {
            set_policy(serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "S", "Effect": "Allow", "Principal": principal, "Action": "ecr:BatchGetImage"}]}))
        };
        for refused in [
            serde_json::json!({"AWS": ["arn:aws:iam::111111111111:root", "arn:aws:iam::999999999999:root"]}),
            serde_json::json!({"AWS": "999999999999"}),
            serde_json::json!({"AWS": "arn:aws:iam::999999999999:role/ci"}),
        ] {
            let (kind, message) = rules.refusal(&naming(refused.clone())).expect("refused");
            assert_eq!(kind, Refusal::Principal, "{refused}");
            assert_eq!(message, INVALID_POLICY_MESSAGE);
        }
        assert_eq!(
            rules.refusal(&naming(
                serde_json::json!({"AWS": "arn:aws:iam::111111111111:root"})
            )),
            None
        );
        assert_eq!(rules.refusal(&naming(serde_json::json!("*"))), None);
    }

    #[test]
    fn given_a_policy_over_the_limit_when_checked_then_refused_for_its_length() {
        let rules = PolicyRules::ecr(&[]);
        let long = serde_json::json!({"Statement": [], "Id": "x".repeat(10_240)});
        let (kind, message) = rules.refusal(&set_policy(long)).expect("refused");
        assert_eq!(kind, Refusal::TooLong);
        assert!(message.contains("10240"), "{message}");
        assert_eq!(
            PolicyRules::default()
                .refusal(&set_policy(serde_json::json!({"Id": "x".repeat(20_000)}))),
            None
        );
    }
}
