//! The identifiers ecr-bridge acts on, each a newtype validated once, where
//! it enters (the mapping document, an event, the environment): AWS account
//! ids, regions, IAM role ARNs, STS ExternalIds and repository names, with
//! the existing [`Digest`] and [`Selector`]. Inside, these types are passed,
//! not strings, so nothing checks them twice or differently.
//!
//! [`RegistryAccess`] puts them together: a registry's account and region and
//! the role to assume there, if any. It holds no AWS type; the AWS adapters
//! turn it into SDK configurations.

mod access;
mod account;
mod external_id;
mod region;
mod repository_name;
mod role_arn;

pub use crate::digest::Digest;
pub use crate::reference::Selector;
pub use access::{AssumeRole, RegistryAccess};
pub(crate) use account::{checked_digits, clip_value};
pub use account::{AccountError, AccountId};
pub use external_id::{ExternalId, ExternalIdError};
pub use region::{Region, RegionError};
pub use repository_name::{RepositoryName, RepositoryNameError};
pub use role_arn::{RoleArn, RoleArnError};

/// What every text identifier has: its text (`as_str`, `AsRef<str>`,
/// `Display`, `String::from`), comparison with plain text, `TryFrom<&str>`
/// and `TryFrom<String>` through its `FromStr`, and serde as a string.
///
/// With `valid: <predicate>`, also the `FromStr` of an identifier whose rule
/// is that one predicate and whose error holds the rejected text, clipped.
macro_rules! text_identifier {
    ($name:ident, $error:ident, valid: $valid:path) => {
        $crate::ids::text_identifier!($name, $error);

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if $valid(s) {
                    Ok($name(s.to_string()))
                } else {
                    Err($error($crate::ids::clip_value(s)))
                }
            }
        }
    };
    ($name:ident, $error:ty) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $error;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use text_identifier;
