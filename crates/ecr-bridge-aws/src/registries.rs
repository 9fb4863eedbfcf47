//! Reaching ECR registries of any account and region: ECR API clients per
//! (region, role), registry credentials from `GetAuthorizationToken`, and
//! registry clients built on them. Everything is created once and cached for
//! the life of the process (a Lambda container lives for hours), so roles are
//! never assumed per image and tokens are fetched about twice a day.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use ecr_bridge::ids::{AccountId, AssumeRole, Region, RegionError};
use ecr_bridge::registry::{
    BasicCredentials, CredentialSource, Endpoint, RegistryClient, RegistryError, RetryPolicy,
    Timeouts,
};
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;

use crate::error::AwsError;
use crate::sts;

/// Who to be, where: the domain's one description of a registry's account,
/// region and role ([`ecr_bridge::ids::RegistryAccess`]).
pub use ecr_bridge::ids::RegistryAccess;

/// Where the source registry is reached: the function's own credentials, or
/// a configured role.
#[derive(Debug, Clone, Default)]
pub struct SourceRole {
    pub assume: Option<AssumeRole>,
}

impl SourceRole {
    /// The source registry of `account` in `region`, through this role.
    pub fn access(&self, account: AccountId, region: Region) -> RegistryAccess {
        RegistryAccess {
            account,
            region,
            assume: self.assume.clone(),
        }
    }
}

/// An ECR API client's identity: the access it serves, or (`None` account)
/// a region and role whose account is not known yet.
type EcrKey = (Option<AccountId>, Region, Option<AssumeRole>);

/// `host=url` overrides of registry addresses, for local runs where the
/// registry of account 123456789012 is a docker-registry on loopback:
/// `123456789012.dkr.ecr.us-east-1.amazonaws.com=http://127.0.0.1:5002`.
#[derive(Clone, Debug, Default)]
pub struct RegistryEndpoints {
    overrides: HashMap<String, String>,
}

impl RegistryEndpoints {
    /// Parses a comma-separated `host=url` list. Only loopback URLs may be
    /// plain HTTP (checked when each endpoint is used).
    pub fn parse(spec: &str) -> Result<RegistryEndpoints, String> {
        let mut overrides = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, url) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected <registry host>=<url>"))?;
            let host = host
                .trim()
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if host.is_empty() {
                return Err(format!("{item:?}: empty registry host"));
            }
            // The endpoint's own error is redacted; the item is not (it may hold a
            // query or credentials), so name the host only.
            Endpoint::parse(url.trim(), true).map_err(|e| format!("{host:?}: {e}"))?;
            overrides.insert(host.to_string(), url.trim().to_string());
        }
        Ok(RegistryEndpoints { overrides })
    }

    fn resolve(&self, host: &str) -> Result<Endpoint, RegistryError> {
        match self.overrides.get(host) {
            Some(url) => Endpoint::parse(url, true),
            None => Endpoint::parse(host, false),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }
}

/// Builds and caches ECR API clients and registry clients per [`RegistryAccess`].
pub struct EcrRegistries {
    base: SdkConfig,
    http: reqwest::Client,
    endpoints: RegistryEndpoints,
    retry: RetryPolicy,
    timeouts: Timeouts,
    session_name: String,
    ecr_clients: Mutex<HashMap<EcrKey, aws_sdk_ecr::Client>>,
    registries: Mutex<HashMap<RegistryAccess, RegistryClient>>,
}

impl EcrRegistries {
    pub fn new(
        base: SdkConfig,
        endpoints: RegistryEndpoints,
        retry: RetryPolicy,
        timeouts: Timeouts,
        session_name: impl Into<String>,
    ) -> Result<EcrRegistries, RegistryError> {
        Ok(EcrRegistries {
            http: ecr_bridge::registry::http_client(&timeouts)?,
            base,
            endpoints,
            retry,
            timeouts,
            session_name: session_name.into(),
            ecr_clients: Mutex::new(HashMap::new()),
            registries: Mutex::new(HashMap::new()),
        })
    }

    /// The region of the function's own configuration (`AWS_REGION`).
    pub fn home_region(&self) -> Result<Region, RegionError> {
        self.base
            .region()
            .map(|r| r.as_ref())
            .unwrap_or("us-east-1")
            .parse()
    }

    /// The ECR API client for this access (assuming its role, if any).
    /// Its identity cache keeps the assumed credentials and refreshes them
    /// before they expire.
    pub async fn ecr(&self, access: &RegistryAccess) -> aws_sdk_ecr::Client {
        self.ecr_client(
            Some(&access.account),
            &access.region,
            access.assume.as_ref(),
        )
        .await
    }

    /// The ECR API client in `region` through `assume`, before the account
    /// is known (the API does not need it; `DescribeRepositories` names it).
    pub async fn ecr_in(
        &self,
        region: &Region,
        assume: Option<&AssumeRole>,
    ) -> aws_sdk_ecr::Client {
        self.ecr_client(None, region, assume).await
    }

    async fn ecr_client(
        &self,
        account: Option<&AccountId>,
        region: &Region,
        assume: Option<&AssumeRole>,
    ) -> aws_sdk_ecr::Client {
        let key: EcrKey = (account.cloned(), region.clone(), assume.cloned());
        let mut clients = self.ecr_clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        let config = sts::config_as(&self.base, region, assume, &self.session_name).await;
        let client = aws_sdk_ecr::Client::new(&config);
        clients.insert(key, client.clone());
        client
    }

    /// The SDK config (region, credentials) of an access: the base
    /// credentials, or a role assumed with them.
    pub async fn config_for(&self, access: &RegistryAccess) -> SdkConfig {
        sts::config_as(
            &self.base,
            &access.region,
            access.assume.as_ref(),
            &self.session_name,
        )
        .await
    }

    /// The registry client for this access, with credentials from
    /// `GetAuthorizationToken` (refreshed before they expire, and on 401).
    pub async fn registry(&self, access: &RegistryAccess) -> Result<RegistryClient, RegistryError> {
        if let Some(c) = self.registries.lock().await.get(access) {
            return Ok(c.clone());
        }
        let tokens = Arc::new(EcrTokenSource::new(self.ecr(access).await, access.clone()));
        let token = tokens.current().await?;
        let host =
            registry_host(&token.proxy_endpoint, access.account.as_str()).map_err(|reason| {
                RegistryError::InvalidEndpoint {
                    endpoint: token.proxy_endpoint.clone(),
                    reason,
                }
            })?;
        let endpoint = self.endpoints.resolve(&host)?;
        tracing::debug!(access = %access, registry = %endpoint, "registry client created");
        let client = RegistryClient::new(
            self.http.clone(),
            endpoint,
            tokens,
            self.retry.clone(),
            self.timeouts.clone(),
        );
        self.registries
            .lock()
            .await
            .insert(access.clone(), client.clone());
        Ok(client)
    }
}

/// `https://111111111111.dkr.ecr.us-east-1.amazonaws.com` with the
/// registry's account put in front: the token names the caller's own
/// registry, and a token is valid for any registry the caller may use.
fn registry_host(proxy_endpoint: &str, account: &str) -> Result<String, String> {
    let host = proxy_endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match host.split_once('.') {
        Some((first, rest))
            if first.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with("dkr.") =>
        {
            Ok(format!("{account}.{rest}"))
        }
        _ => Err(format!("unexpected ECR proxy endpoint {host:?}")),
    }
}

/// A registry token and what it came with.
#[derive(Clone)]
struct Token {
    credentials: BasicCredentials,
    proxy_endpoint: String,
    /// When to fetch a new one.
    refresh_at: SystemTime,
    fetched_at: Instant,
}

/// Registry credentials from `ecr:GetAuthorizationToken`, cached until
/// shortly before `expiresAt`. The registry client asks for every request,
/// so a warm container renews its token in time. A token that arrives
/// already expired (moto's are dated 2015) is still used for a while rather
/// than re-fetched on every request; if the registry refuses it (401, or
/// ECR's expired-token 403), the client asks for a fresh one.
pub struct EcrTokenSource {
    ecr: aws_sdk_ecr::Client,
    access: RegistryAccess,
    cached: Mutex<Option<Token>>,
}

/// Refresh this long before the token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);
/// Use any token at least this long, however it is dated.
const MIN_TOKEN_USE: Duration = Duration::from_secs(5 * 60);

impl EcrTokenSource {
    pub fn new(ecr: aws_sdk_ecr::Client, access: RegistryAccess) -> Self {
        EcrTokenSource {
            ecr,
            access,
            cached: Mutex::new(None),
        }
    }

    async fn current(&self) -> Result<Token, RegistryError> {
        self.get(false).await
    }

    async fn get(&self, refresh: bool) -> Result<Token, RegistryError> {
        let asked = Instant::now();
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref() {
            if !refresh && SystemTime::now() < t.refresh_at {
                return Ok(t.clone());
            }
            // Many requests refused at once all ask for a refresh: the first
            // fetches, the others (queued on the lock) take its token.
            if refresh && t.fetched_at >= asked {
                return Ok(t.clone());
            }
        }
        let token = self.fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn fetch(&self) -> Result<Token, RegistryError> {
        let out = self
            .ecr
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| {
                let e = AwsError::from_sdk("ecr:GetAuthorizationToken", e);
                RegistryError::Credentials {
                    message: format!("registry token for {}: {e}", self.access),
                    retryable: e.retryable,
                }
            })?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| RegistryError::Credentials {
                message: format!(
                    "registry token for {}: empty authorizationData",
                    self.access
                ),
                retryable: false,
            })?;
        let credentials =
            BasicCredentials::from_base64_token(data.authorization_token().unwrap_or_default())?;
        let now = SystemTime::now();
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or(now + Duration::from_secs(12 * 3600));
        if expires_at <= now {
            tracing::warn!(access = %self.access, "registry token arrived already expired; using it once before refreshing");
        }
        let refresh_at = expires_at
            .checked_sub(REFRESH_MARGIN)
            .unwrap_or(now)
            .max(now + MIN_TOKEN_USE);
        Ok(Token {
            credentials,
            proxy_endpoint: data.proxy_endpoint().unwrap_or_default().to_string(),
            refresh_at,
            fetched_at: Instant::now(),
        })
    }
}

impl fmt::Debug for EcrTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrTokenSource")
            .field("access", &self.access)
            .finish()
    }
}

impl CredentialSource for EcrTokenSource {
    fn credentials(
        &self,
        refresh: bool,
    ) -> BoxFuture<'_, Result<Option<BasicCredentials>, RegistryError>> {
        Box::pin(async move { Ok(Some(self.get(refresh).await?.credentials)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_proxy_endpoint_of_caller_when_building_host_for_another_account_then_account_is_swapped(
    ) {
        assert_eq!(
            registry_host(
                "https://111111111111.dkr.ecr.us-east-1.amazonaws.com",
                "222222222222"
            )
            .unwrap(),
            "222222222222.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            registry_host(
                "https://111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "111111111111"
            )
            .unwrap(),
            "111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert!(registry_host("https://example.com", "1").is_err());
    }

    #[test]
    fn given_endpoint_overrides_when_parsed_then_loopback_http_is_accepted_and_others_refused() {
        let e = RegistryEndpoints::parse(
            "111111111111.dkr.ecr.us-east-1.amazonaws.com=http://127.0.0.1:5002, 222222222222.dkr.ecr.us-east-1.amazonaws.com=http://localhost:5003",
        )
        .unwrap();
        let resolved = e
            .resolve("111111111111.dkr.ecr.us-east-1.amazonaws.com")
            .unwrap();
        assert_eq!(resolved.to_string(), "http://127.0.0.1:5002");
        // Not overridden: the real host, over HTTPS.
        assert_eq!(
            e.resolve("333333333333.dkr.ecr.us-east-1.amazonaws.com")
                .unwrap()
                .to_string(),
            "https://333333333333.dkr.ecr.us-east-1.amazonaws.com"
        );
        let err =
            RegistryEndpoints::parse("a.dkr.ecr.x.amazonaws.com=http://10.1.2.3:5000").unwrap_err();
        assert!(err.contains("only allowed to loopback"), "{err}");
        assert!(RegistryEndpoints::parse("no-equals-sign").is_err());
    }
}
