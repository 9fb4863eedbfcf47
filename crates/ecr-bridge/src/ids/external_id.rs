//! STS `ExternalId`s, given with a role to assume.

use super::text_identifier;

/// STS's `ExternalId`: 2-1224 characters of `[\w+=,.@:/-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalId(String);

text_identifier!(ExternalId, ExternalIdError, valid: is_external_id);

fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an ExternalId is 2-1224 characters of A-Z a-z 0-9 _ + = , . @ : / - (got {0:?})")]
pub struct ExternalIdError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_external_ids_when_checked_then_sts_alphabet_and_length_apply() {
        assert!("kuali-sync".parse::<ExternalId>().is_ok());
        assert!("a:b/c=d,e.f@g+h_i".parse::<ExternalId>().is_ok());
        assert!("x".parse::<ExternalId>().is_err());
        assert!("has space".parse::<ExternalId>().is_err());
        assert!("a".repeat(1225).parse::<ExternalId>().is_err());
    }
}
