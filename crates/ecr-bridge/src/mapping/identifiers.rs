//! The shapes of AWS identifiers a destination names: regions, IAM role
//! ARNs and STS ExternalIds. Checked at load so that a typo fails the
//! document instead of every AssumeRole.

/// `us-east-1`, `us-gov-west-1`, `us-isob-east-1`, `cn-north-1`, `eusc-de-east-1`:
/// three or more lowercase words joined by `-`, the last one a number.
pub(super) fn is_region(r: &str) -> bool {
    let words: Vec<&str> = r.split('-').collect();
    let Some((number, names)) = words.split_last() else {
        return false;
    };
    r.len() <= 32
        && names.len() >= 2
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && names
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (2..=4).contains(&names[0].len())
}

/// The account of `arn:<partition>:iam::<account>:role/<path/>name`, if it is one.
pub(super) fn role_account(arn: &str) -> Option<&str> {
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
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
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
    (arn_word == "arn"
        && partition_ok
        && service == "iam"
        && region.is_empty()
        && account_ok
        && resource_ok)
        .then_some(account)
}

/// STS's `ExternalId`: 2-1224 characters of `[\w+=,.@:/-]`.
pub(super) fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_region_shapes_when_checked_then_partitions_pass_and_typos_fail() {
        for ok in [
            "us-east-1",
            "eu-west-2",
            "us-gov-west-1",
            "cn-north-1",
            "cn-northwest-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "ap-southeast-7",
            "eusc-de-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "us--east-1",
            "-us-east-1",
            "us-east-123",
            "",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn given_role_arns_when_checked_then_account_is_extracted_from_valid_ones_only() {
        assert_eq!(
            role_account("arn:aws:iam::222222222222:role/ecr-bridge-push"),
            Some("222222222222")
        );
        assert_eq!(
            role_account("arn:aws-us-gov:iam::222222222222:role/service/x+y=z,a.b@c-d"),
            Some("222222222222")
        );
        for bad in [
            "arn:aws:iam::22222222222:role/x",     // 11 digits
            "arn:aws:iam::222222222222:user/x",    // not a role
            "arn:aws:iam::222222222222:role/",     // no name
            "arn:aws:iam::222222222222:role/a//b", // empty path segment
            "arn:aws:sts::222222222222:role/x",
            "arn:aws:iam:us-east-1:222222222222:role/x",
            "arn:AWS:iam::222222222222:role/x",
            "ecr-bridge-push",
        ] {
            assert_eq!(role_account(bad), None, "{bad}");
        }
        let long_name = format!("arn:aws:iam::222222222222:role/{}", "n".repeat(65));
        assert_eq!(role_account(&long_name), None);
    }

    #[test]
    fn given_external_ids_when_checked_then_sts_alphabet_and_length_apply() {
        assert!(is_external_id("kuali-sync"));
        assert!(is_external_id("a:b/c=d,e.f@g+h_i"));
        assert!(!is_external_id("x"));
        assert!(!is_external_id("has space"));
        assert!(!is_external_id(&"a".repeat(1225)));
    }
}
