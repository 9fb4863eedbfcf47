//! AWS account ids as the users table holds them: a 12-digit string, or a
//! number that lost its leading zeros.

use std::fmt;
use std::str::FromStr;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// An account attribute as read from the table, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountValue {
    /// A string (`S`).
    Text(String),
    /// A number (`N`), in DynamoDB's decimal text form.
    Number(String),
    /// Any other type; the name is DynamoDB's (`BOOL`, `L`, `NULL`…).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account id {0:?} is not a 12-digit string")]
    NotTwelveDigits(String),
    #[error("account id number {0} is not a whole number of at most 12 digits")]
    BadNumber(String),
    #[error("account id is a DynamoDB {0} value; expected a string (S) or a number (N)")]
    WrongType(String),
}

impl AccountId {
    pub const LEN: usize = 12;

    /// A string must already be 12 digits: zero-padding a string could
    /// turn a typo into someone else's account.
    pub fn from_value(value: &AccountValue) -> Result<AccountId, AccountError> {
        match value {
            AccountValue::Text(s) => s.parse(),
            AccountValue::Number(n) => {
                // A number cannot keep leading zeros, so pad it back.
                if (1..=Self::LEN).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(AccountId(format!("{n:0>12}")))
                } else {
                    Err(AccountError::BadNumber(clip(n)))
                }
            }
            AccountValue::Other(kind) => Err(AccountError::WrongType(clip(kind))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_string()))
        } else {
            Err(AccountError::NotTwelveDigits(clip(s)))
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> AccountValue {
        AccountValue::Text(s.into())
    }

    #[test]
    fn given_a_twelve_digit_string_when_normalised_then_kept_as_is() {
        assert_eq!(
            AccountId::from_value(&text("012345678901"))
                .unwrap()
                .as_str(),
            "012345678901"
        );
    }

    #[test]
    fn given_a_number_when_normalised_then_zero_padded_to_twelve_digits() {
        let n = |s: &str| AccountId::from_value(&AccountValue::Number(s.into()));
        assert_eq!(n("12345678901").unwrap().as_str(), "012345678901");
        assert_eq!(n("123").unwrap().as_str(), "000000000123");
        assert_eq!(n("222222222222").unwrap().as_str(), "222222222222");
        for bad in ["1234567890123", "-1", "1.5", "1e3", ""] {
            assert!(matches!(n(bad), Err(AccountError::BadNumber(_))), "{bad:?}");
        }
    }

    #[test]
    fn given_strings_that_are_not_twelve_digits_when_normalised_then_refused_not_padded() {
        for bad in [
            "123456",
            " 123456789012",
            "12345678901a",
            "1234567890123",
            "",
        ] {
            assert!(
                matches!(
                    AccountId::from_value(&text(bad)),
                    Err(AccountError::NotTwelveDigits(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn given_other_types_when_normalised_then_the_error_names_the_type() {
        let e = AccountId::from_value(&AccountValue::Other("BOOL".into())).unwrap_err();
        assert!(e.to_string().contains("BOOL"), "{e}");
    }
}
