//! IAM role ARNs: `arn:<partition>:iam::<account>:role/<path/>name`.

use std::str::FromStr;

use super::{text_identifier, AccountId};

/// An IAM role ARN in a known partition shape (`aws`, `aws-<words>`), of
/// a valid account, with IAM's path and name alphabet (`[\w+=,.@-]`, the
/// name at most 64 characters); at most 2048 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleArn(String, AccountId);

text_identifier!(RoleArn, RoleArnError);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IAM role ARN like arn:aws:iam::123456789012:role/name")]
pub struct RoleArnError(pub String);

impl RoleArn {
    /// The account the role is in.
    pub fn account(&self) -> &AccountId {
        &self.1
    }
}

impl FromStr for RoleArn {
    type Err = RoleArnError;

    fn from_str(arn: &str) -> Result<Self, Self::Err> {
        match role_account(arn) {
            Some(account) => Ok(RoleArn(arn.to_string(), account)),
            None => Err(RoleArnError(arn.chars().take(100).collect())),
        }
    }
}

fn role_account(arn: &str) -> Option<AccountId> {
    if arn.len() > 2048 {
        return None;
    }
    let mut parts = arn.splitn(6, ':');
    let (arn_word, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        });
    // IAM names and path segments: [\w+=,.@-]; the name is at most 64.
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    };
    let resource_ok = resource.strip_prefix("role/").is_some_and(|path| {
        let segments: Vec<&str> = path.split('/').collect();
        segments.iter().all(|s| segment_ok(s))
            && segments.last().is_some_and(|name| name.len() <= 64)
    });
    if arn_word == "arn" && partition_ok && service == "iam" && region.is_empty() && resource_ok {
        account.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account_of(arn: &str) -> Option<String> {
        arn.parse::<RoleArn>().ok().map(|r| r.account().to_string())
    }

    #[test]
    fn given_role_arns_when_checked_then_account_is_extracted_from_valid_ones_only() {
        assert_eq!(
            account_of("arn:aws:iam::222222222222:role/ecr-bridge-push").as_deref(),
            Some("222222222222")
        );
        assert_eq!(
            account_of("arn:aws-us-gov:iam::222222222222:role/service/x+y=z,a.b@c-d").as_deref(),
            Some("222222222222")
        );
        for bad in [
            "arn:aws:iam::22222222222:role/x",     // 11 digits
            "arn:aws:iam::000000000000:role/x",    // no account has it
            "arn:aws:iam::222222222222:user/x",    // not a role
            "arn:aws:iam::222222222222:role/",     // no name
            "arn:aws:iam::222222222222:role/a//b", // empty path segment
            "arn:aws:sts::222222222222:role/x",
            "arn:aws:iam:us-east-1:222222222222:role/x",
            "arn:AWS:iam::222222222222:role/x",
            "arn:awsfoo:iam::222222222222:role/x",
            "arn:aws:s3:::bucket",
            "ecr-bridge-push",
        ] {
            assert_eq!(account_of(bad), None, "{bad}");
        }
        let long_name = format!("arn:aws:iam::222222222222:role/{}", "n".repeat(65));
        assert_eq!(account_of(&long_name), None);
    }
}
