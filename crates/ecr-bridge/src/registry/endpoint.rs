//! Where a registry lives, and whether plain HTTP is acceptable there.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use super::error::RegistryError;

/// The base URL of a registry (`https://host[:port]`). Plain `http` is
/// refused unless the host is a loopback address *and* the caller opted in:
/// TLS stays verified everywhere else. The same rule holds for every URL
/// the registry sends us to ([`Endpoint::admits`]).
#[derive(Clone)]
pub struct Endpoint {
    base: Url,
    /// The caller allowed plain HTTP to loopback (`--plain-http-loopback`).
    plain_http_loopback: bool,
}

/// Two endpoints are the same registry when their base URLs are; the
/// opt-in is a rule about where to go, not part of where it is.
impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.base == other.base
    }
}

impl Eq for Endpoint {}

impl Endpoint {
    /// `spec` is `host[:port]` (HTTPS) or a full `http(s)://host[:port]` URL.
    pub fn parse(spec: &str, allow_plain_http_loopback: bool) -> Result<Endpoint, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidEndpoint {
            endpoint: redacted(spec),
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
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(invalid("must not carry a query, fragment or credentials"));
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
        Ok(Endpoint {
            base: url,
            plain_http_loopback: allow_plain_http_loopback,
        })
    }

    /// Whether a URL this registry sent us to (a redirect, an upload
    /// Location) may be followed: the rule of [`Endpoint::parse`], and never
    /// from TLS down to plain HTTP, which only a man in the middle or a
    /// broken registry asks for. `Err` says why not.
    pub fn admits(&self, url: &Url) -> Result<(), &'static str> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if !host_is_loopback(url.host_str().unwrap_or("")) => {
                Err("plain HTTP is only allowed to loopback addresses")
            }
            "http" if !self.plain_http_loopback => {
                Err("plain HTTP to loopback was not explicitly allowed (--plain-http-loopback)")
            }
            "http" if self.base.scheme() == "https" => {
                Err("it leaves an HTTPS registry for plain HTTP")
            }
            "http" => Ok(()),
            _ => Err("only https (or http to loopback) is followed"),
        }
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

/// `spec` fit for an error message: no user, password, query or fragment
/// (an endpoint URL that carries them is refused, and must not be echoed).
fn redacted(spec: &str) -> String {
    let spec = spec.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match spec.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), spec),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}{rest}").chars().take(200).collect()
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
    fn given_an_endpoint_url_with_credentials_or_a_query_when_refused_then_the_error_shows_neither()
    {
        for spec in [
            "https://AWS:s3cr3t@registry.example.com",
            "https://registry.example.com/?X-Amz-Signature=s3cr3t",
            "AWS:s3cr3t@registry.example.com#s3cr3t",
        ] {
            let err = Endpoint::parse(spec, false).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cr3t"), "{spec}: {text}");
            assert!(text.contains("registry.example.com"), "{spec}: {text}");
        }
    }

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn given_an_https_endpoint_when_sent_elsewhere_then_only_https_is_followed() {
        let without = Endpoint::parse("registry.example.com", false).unwrap();
        let with = Endpoint::parse("registry.example.com", true).unwrap();
        for e in [&without, &with] {
            assert!(e
                .admits(&url("https://bucket.s3.amazonaws.com/x?X-Amz-Signature=1"))
                .is_ok());
            assert!(e.admits(&url("http://bucket.s3.amazonaws.com/x")).is_err());
            assert!(e.admits(&url("ftp://127.0.0.1/x")).is_err());
        }
        let refused = without.admits(&url("http://127.0.0.1:9/x")).unwrap_err();
        assert!(refused.contains("not explicitly allowed"), "{refused}");
        let downgrade = with.admits(&url("http://127.0.0.1:9/x")).unwrap_err();
        assert!(
            downgrade.contains("leaves an HTTPS registry"),
            "{downgrade}"
        );
    }

    #[test]
    fn given_a_plain_http_loopback_endpoint_when_sent_elsewhere_then_loopback_http_or_https_only() {
        let e = Endpoint::parse("127.0.0.1:5000", true).unwrap();
        assert!(e.admits(&url("http://127.0.0.1:5001/x")).is_ok());
        assert!(e.admits(&url("http://[::1]:5001/x")).is_ok());
        assert!(e.admits(&url("https://bucket.s3.amazonaws.com/x")).is_ok());
        let off = e.admits(&url("http://10.0.0.5/x")).unwrap_err();
        assert!(off.contains("only allowed to loopback"), "{off}");
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
