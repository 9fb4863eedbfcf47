//! AWS account ids as the users table holds them: a 12-digit string, or a
//! number that lost its leading zeros. Ids no account can have are refused
//! here, before they reach a policy: a DynamoDB number 0 would otherwise
//! become `000000000000` and be granted. The id itself is
//! [`crate::ids::AccountId`], re-exported here.

use crate::ids::{checked_digits as checked, clip_value as clip};
pub use crate::ids::{AccountError, AccountId};

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

impl AccountId {
    /// A string must already be 12 digits: zero-padding a string could
    /// turn a typo into someone else's account.
    pub fn from_value(value: &AccountValue) -> Result<AccountId, AccountError> {
        match value {
            AccountValue::Text(s) => s.parse(),
            AccountValue::Number(n) => {
                let bad = |reason| {
                    Err(AccountError::BadNumber {
                        value: clip(n),
                        reason,
                    })
                };
                if n.starts_with('-') {
                    bad("negative")
                } else if n.contains(['.', 'e', 'E']) {
                    // Refused rather than normalised: no account id is written so.
                    bad("not a whole number in plain digits")
                } else if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    bad("not a decimal number")
                } else if n.trim_start_matches('0').len() > Self::LEN {
                    bad("more than 12 digits long")
                } else {
                    // A number cannot keep leading zeros, so pad it back.
                    let digits = n.trim_start_matches('0');
                    checked(format!("{digits:0>12}"))
                }
            }
            AccountValue::Other(kind) => Err(AccountError::WrongType(clip(kind))),
        }
    }
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
        // Leading zeros DynamoDB may keep do not count as digits.
        assert_eq!(n("000222222222222").unwrap().as_str(), "222222222222");
        for bad in ["1234567890123", "-1", "1.5", "1e3", ""] {
            assert!(
                matches!(n(bad), Err(AccountError::BadNumber { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn given_numbers_no_account_can_have_when_normalised_then_each_refused_saying_why() {
        let n = |s: &str| {
            AccountId::from_value(&AccountValue::Number(s.into()))
                .unwrap_err()
                .to_string()
        };
        assert!(n("-123456789012").contains("negative"), "{}", n("-1"));
        assert!(n("123.5").contains("not a whole number"));
        assert!(n("1.0").contains("not a whole number"));
        assert!(n("1234567890123").contains("more than 12 digits"));
        assert!(n("0").contains("all zeros"), "{}", n("0"));
        assert!(n("-0").contains("negative"));
    }

    #[test]
    fn given_an_all_zero_string_when_normalised_then_refused_as_no_account() {
        let e = AccountId::from_value(&text("000000000000")).unwrap_err();
        assert_eq!(e, AccountError::AllZeros("000000000000".into()));
        assert!("000000000000".parse::<AccountId>().is_err());
        assert!("000000000001".parse::<AccountId>().is_ok());
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
