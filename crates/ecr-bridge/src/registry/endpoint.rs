//! Where a registry lives, and whether plain HTTP is acceptable there.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use super::error::RegistryError;

/// The base URL of a registry (`https://host[:port]`). Plain `http` is
/// refused unless the host is a loopback address *and* the caller opted in:
/// TLS stays verified everywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: Url,
}

impl Endpoint {
    /// `spec` is `host[:port]` (HTTPS) or a full `http(s)://host[:port]` URL.
    pub fn parse(spec: &str, allow_plain_http_loopback: bool) -> Result<Endpoint, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidEndpoint {
            endpoint: spec.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let with_scheme = if spec.contains("://") {
            spec.to_string()
        } else if allow_plain_http_loopback
            && host_is_loopback(spec.split(':').next().unwrap_or(""))
        {
            // A bare loopback host:port with plain HTTP allowed: local registries speak HTTP.
            format!("http://{spec}")
        } else {
            format!("https://{spec}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .to_string();
        if url.path() != "/" && !url.path().is_empty() {
            return Err(invalid("must not have a path"));
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry a query or credentials"));
        }
        match url.scheme() {
            "https" => {}
            "http" if !host_is_loopback(&host) => {
                return Err(invalid(
                    "plain HTTP is only allowed to loopback addresses; use https (TLS is always verified)",
                ))
            }
            "http" if !allow_plain_http_loopback => {
                return Err(invalid("plain HTTP to loopback was not explicitly allowed"))
            }
            "http" => {}
            other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
        }
        Ok(Endpoint { base: url })
    }

    /// `host[:port]` as it appears in image references.
    pub fn authority(&self) -> String {
        match self.base.port() {
            Some(p) => format!("{}:{p}", self.base.host_str().unwrap_or_default()),
            None => self.base.host_str().unwrap_or_default().to_string(),
        }
    }

    pub fn is_plain_http(&self) -> bool {
        self.base.scheme() == "http"
    }

    /// `/v2/<path>` on this registry.
    pub fn v2(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{path}"));
        u
    }

    /// Whether `url` is on this registry (same scheme, host and port): only
    /// then does it get our credentials.
    pub fn owns(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    pub fn base(&self) -> &Url {
        &self.base
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`.
pub fn host_is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_bare_host_when_parsed_then_https_is_used() {
        let e = Endpoint::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com", false).unwrap();
        assert_eq!(
            e.to_string(),
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(e.v2("a/b/manifests/x").path(), "/v2/a/b/manifests/x");
    }

    #[test]
    fn given_loopback_with_opt_in_when_parsed_then_plain_http_is_allowed() {
        let e = Endpoint::parse("127.0.0.1:5000", true).unwrap();
        assert!(e.is_plain_http());
        assert_eq!(e.authority(), "127.0.0.1:5000");
        assert!(Endpoint::parse("http://[::1]:5000", true)
            .unwrap()
            .is_plain_http());
        assert!(Endpoint::parse("http://localhost:5000", true).is_ok());
    }

    #[test]
    fn given_loopback_without_opt_in_when_parsed_then_https_or_refusal() {
        assert!(!Endpoint::parse("127.0.0.1:5000", false)
            .unwrap()
            .is_plain_http());
        assert!(Endpoint::parse("http://127.0.0.1:5000", false).is_err());
    }

    #[test]
    fn given_plain_http_to_a_non_loopback_host_when_parsed_then_refused_even_with_opt_in() {
        for spec in [
            "http://10.0.0.5:5000",
            "http://registry.example.com",
            "http://127.0.0.1.nip.io",
        ] {
            let err = Endpoint::parse(spec, true).unwrap_err().to_string();
            assert!(err.contains("only allowed to loopback"), "{spec}: {err}");
        }
    }

    #[test]
    fn given_urls_when_checking_ownership_then_port_and_host_must_match() {
        let e = Endpoint::parse("http://127.0.0.1:5000", true).unwrap();
        assert!(
            e.owns(&Url::parse("http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=1").unwrap())
        );
        assert!(!e.owns(&Url::parse("http://127.0.0.1:5001/x").unwrap()));
        assert!(!e.owns(&Url::parse("https://bucket.s3.amazonaws.com/x").unwrap()));
    }
}
