//! Where a registry may send us: redirects (ECR sends blob GETs to
//! presigned S3 URLs) and upload Locations. Both are followed only where
//! the endpoint itself could have pointed ([`Endpoint::admits`]): a
//! registry, or a man in the middle of plain-HTTP loopback traffic, must not
//! be able to move us off TLS. Errors name the target by scheme, host and
//! port only: the rest of a presigned URL carries its signature.

use reqwest::header::LOCATION;
use url::Url;

use super::endpoint::Endpoint;
use super::error::{host_port, RegistryError};
use super::response::header_str;

/// Redirects followed for one request before its answer is taken as final.
pub(super) const MAX_REDIRECTS: usize = 5;

/// The next URL of a redirect answer (`None` when it has no `Location`).
pub(super) fn redirect_target(
    endpoint: &Endpoint,
    method: &str,
    resp: &reqwest::Response,
) -> Result<Option<Url>, RegistryError> {
    let Some(location) = header_str(resp, LOCATION.as_str()) else {
        return Ok(None);
    };
    let from = resp.url();
    let request = format!("{method} {}{}", host_port(from), from.path());
    follow(endpoint, &request, "redirect", from, &location).map(Some)
}

/// `location` (absolute, or relative to `from`) when the endpoint's rule
/// admits it; a permanent [`RegistryError::UnsafeLocation`] otherwise.
pub(super) fn follow(
    endpoint: &Endpoint,
    request: &str,
    what: &'static str,
    from: &Url,
    location: &str,
) -> Result<Url, RegistryError> {
    let next = from.join(location).map_err(|e| RegistryError::Protocol {
        request: request.to_string(),
        reason: format!("bad {what}: {e}"),
    })?;
    match endpoint.admits(&next) {
        Ok(()) => Ok(next),
        Err(reason) => Err(RegistryError::UnsafeLocation {
            request: request.to_string(),
            what,
            target: format!("{}://{}", next.scheme(), host_port(&next)),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Url {
        Url::parse("https://registry.example.com/v2/app/blobs/uploads/").unwrap()
    }

    #[test]
    fn given_relative_and_absolute_https_locations_when_followed_then_they_resolve_against_the_request(
    ) {
        let e = Endpoint::parse("registry.example.com", false).unwrap();
        let (upload, redirect) = (
            "/v2/app/blobs/uploads/u1?_state=s",
            "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=1",
        );

        let relative = follow(&e, "POST x", "upload Location", &from(), upload).unwrap();
        let absolute = follow(&e, "GET x", "redirect", &from(), redirect).unwrap();

        assert_eq!(
            relative.as_str(),
            "https://registry.example.com/v2/app/blobs/uploads/u1?_state=s"
        );
        assert_eq!(absolute.host_str(), Some("bucket.s3.amazonaws.com"));
    }

    #[test]
    fn given_a_plain_http_location_from_an_https_endpoint_when_followed_then_a_permanent_error_without_the_query(
    ) {
        let e = Endpoint::parse("registry.example.com", true).unwrap();
        let request = "POST registry.example.com/v2/app/blobs/uploads/";
        let location = "http://127.0.0.1:9/v2/app/blobs/uploads/u1?X-Amz-Signature=s3cr3t";

        let err = follow(&e, request, "upload Location", &from(), location).unwrap_err();

        assert!(
            matches!(err, RegistryError::UnsafeLocation { .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        let text = format!("{err} {err:?}");
        assert!(text.contains("http://127.0.0.1:9"), "{text}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("X-Amz"),
            "{text}"
        );
    }
}
