//! Registry credentials. ECR's `/v2/` challenge is Basic, with a password
//! that expires; a [`CredentialSource`] hands out the current one and is
//! asked to refresh when the registry answers 401.

use std::fmt;

use base64::Engine;
use futures_util::future::BoxFuture;

use super::error::RegistryError;

/// A user name and a password that never appears in `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub username: String,
    password: String,
}

impl BasicCredentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        BasicCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// `user:password`, as given on a command line or in an environment variable.
    pub fn parse(pair: &str) -> Result<Self, RegistryError> {
        match pair.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(BasicCredentials::new(u, p)),
            _ => Err(RegistryError::Credentials {
                message: "expected user:password".into(),
                retryable: false,
            }),
        }
    }

    /// A base64 `user:password` pair as ECR's GetAuthorizationToken returns it.
    pub fn from_base64_token(token: &str) -> Result<Self, RegistryError> {
        let bad = |m: &str| RegistryError::Credentials {
            message: format!("authorization token {m}"),
            retryable: false,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| bad("is not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?;
        BasicCredentials::parse(&text).map_err(|_| bad("is not user:password"))
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub(crate) fn header_value(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Supplies credentials for one registry. The client asks before every
/// request, so a source that caches decides itself when its token is due
/// for renewal. `refresh` is true after the registry refused the previous
/// ones (expired token): fetch new ones.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    fn credentials(
        &self,
        refresh: bool,
    ) -> BoxFuture<'_, Result<Option<BasicCredentials>, RegistryError>>;

    /// Whether `refresh` can yield anything new (fixed credentials cannot,
    /// so a refused request is not sent again with the same ones).
    fn can_refresh(&self) -> bool {
        true
    }
}

/// Fixed credentials, or none (anonymous).
#[derive(Debug, Clone)]
pub struct StaticCredentials(pub Option<BasicCredentials>);

impl CredentialSource for StaticCredentials {
    fn credentials(
        &self,
        _refresh: bool,
    ) -> BoxFuture<'_, Result<Option<BasicCredentials>, RegistryError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }

    fn can_refresh(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_credentials_when_debug_printed_then_password_is_redacted() {
        let c = BasicCredentials::new("AWS", "s3cr3t-token");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("AWS"));
    }

    #[test]
    fn given_ecr_token_when_decoded_then_user_and_password_split_at_first_colon() {
        // base64("AWS:123456789012-auth-token"), the shape GetAuthorizationToken returns.
        let c =
            BasicCredentials::from_base64_token("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap();
        assert_eq!(c.username, "AWS");
        assert_eq!(c.password(), "123456789012-auth-token");
        assert_eq!(
            c.header_value(),
            "Basic QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu"
        );
    }

    #[test]
    fn given_malformed_pairs_when_parsed_then_refused_without_echoing_them() {
        for bad in ["nocolon", ":pw", ""] {
            let e = BasicCredentials::parse(bad).unwrap_err().to_string();
            assert!(e.contains("user:password"));
        }
        let e = BasicCredentials::from_base64_token("!!!")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not base64"));
    }
}
