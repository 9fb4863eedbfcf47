//! Who to be, where: the one description of how a registry is reached.

use std::fmt;

use serde::Serialize;

use super::{AccountId, ExternalId, Region, RoleArn};

/// A role to assume (with its ExternalId, if the role's trust policy asks
/// for one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AssumeRole {
    pub role_arn: RoleArn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
}

/// The account and region of a registry and, for another account, the role
/// to assume there (`None`: the caller's own credentials). Serialized flat:
/// `account`, `region`, and `role_arn`, `external_id` when set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RegistryAccess {
    pub account: AccountId,
    pub region: Region,
    #[serde(flatten)]
    pub assume: Option<AssumeRole>,
}

impl RegistryAccess {
    pub fn new(account: AccountId, region: Region, assume: Option<AssumeRole>) -> Self {
        RegistryAccess {
            account,
            region,
            assume,
        }
    }

    pub fn role_arn(&self) -> Option<&RoleArn> {
        self.assume.as_ref().map(|a| &a.role_arn)
    }

    pub fn external_id(&self) -> Option<&ExternalId> {
        self.assume.as_ref().and_then(|a| a.external_id.as_ref())
    }
}

/// `222222222222/us-east-1`, with ` as <role ARN>` through a role.
impl fmt::Display for RegistryAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)?;
        if let Some(r) = self.role_arn() {
            write!(f, " as {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_accesses_when_shown_and_serialized_then_flat_with_the_role_only_when_set() {
        let own = RegistryAccess::new(
            "111111111111".parse().unwrap(),
            "us-east-1".parse().unwrap(),
            None,
        );
        assert_eq!(own.to_string(), "111111111111/us-east-1");
        assert_eq!(
            serde_json::to_value(&own).unwrap(),
            serde_json::json!({"account": "111111111111", "region": "us-east-1"})
        );
        let through = RegistryAccess {
            assume: Some(AssumeRole {
                role_arn: "arn:aws:iam::111111111111:role/push".parse().unwrap(),
                external_id: Some("kuali-sync".parse().unwrap()),
            }),
            ..own
        };
        assert_eq!(
            through.to_string(),
            "111111111111/us-east-1 as arn:aws:iam::111111111111:role/push"
        );
        assert_eq!(
            serde_json::to_value(&through).unwrap(),
            serde_json::json!({"account": "111111111111", "region": "us-east-1",
                "role_arn": "arn:aws:iam::111111111111:role/push", "external_id": "kuali-sync"})
        );
    }
}
