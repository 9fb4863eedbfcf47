//! AWS account ids: twelve digits, and not all of them zero (no AWS account
//! has `000000000000`; a DynamoDB number 0 would otherwise become it and be
//! granted). The users table's forms of an id are read in
//! [`crate::access::account`].

use std::str::FromStr;

use super::text_identifier;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

text_identifier!(AccountId, AccountError);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account id {0:?} is not a 12-digit string")]
    NotTwelveDigits(String),
    #[error("account id number {value} is {reason}; expected a whole number of at most 12 digits")]
    BadNumber { value: String, reason: &'static str },
    #[error("account id {0:?} is all zeros; no AWS account has it")]
    AllZeros(String),
    #[error("account id is a DynamoDB {0} value; expected a string (S) or a number (N)")]
    WrongType(String),
}

impl AccountId {
    pub const LEN: usize = 12;
}

impl FromStr for AccountId {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_digit()) {
            checked_digits(s.to_string())
        } else {
            Err(AccountError::NotTwelveDigits(clip_value(s)))
        }
    }
}

/// Twelve digits, but not an id AWS gives out.
pub(crate) fn checked_digits(digits: String) -> Result<AccountId, AccountError> {
    if digits.bytes().all(|b| b == b'0') {
        Err(AccountError::AllZeros(digits))
    } else {
        Ok(AccountId(digits))
    }
}

pub(crate) fn clip_value(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_account_texts_when_parsed_then_only_twelve_digits_not_all_zero_pass() {
        assert_eq!(
            "012345678901".parse::<AccountId>().unwrap().as_str(),
            "012345678901"
        );
        assert!(matches!(
            "000000000000".parse::<AccountId>(),
            Err(AccountError::AllZeros(_))
        ));
        for bad in [
            "12345",
            "12345678901x",
            "1234567890123",
            " 123456789012",
            "",
        ] {
            assert!(
                matches!(
                    bad.parse::<AccountId>(),
                    Err(AccountError::NotTwelveDigits(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn given_an_account_when_compared_and_serialized_then_it_is_its_text() {
        let a: AccountId = "222222222222".try_into().unwrap();
        assert_eq!(a, "222222222222");
        assert_eq!(a.to_string(), "222222222222");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"222222222222\"");
        let back: AccountId = serde_json::from_str("\"222222222222\"").unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<AccountId>("\"2222\"").is_err());
    }
}
