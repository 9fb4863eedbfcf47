//! Manifests: `/v2/<name>/manifests/<tag or digest>`. Every request sends
//! all the manifest types we copy in `Accept`, so the registry serves a
//! manifest as stored rather than converted (which would change its digest).

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::client::Repository;
use super::error::RegistryError;
use super::response::{header_digest, header_str};
use super::status::Subject;
use super::transport::Request;
use crate::digest::Digest;
use crate::manifest::{ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES};
use crate::reference::Selector;

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    /// The `Content-Type` the registry sent.
    pub media_type: Option<String>,
}

/// What a HEAD on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
}

impl Repository {
    /// HEAD a manifest by tag or digest. `None` when it (or the repository) does not exist.
    pub async fn manifest_head(
        &self,
        at: &Selector,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let (t, name, reference) = (self.transport(), self.name(), &at.to_string());
        let req = manifest_request(Method::HEAD, self, reference);
        t.execute_with(&req, move |resp| async move {
            match resp.status() {
                s if s.is_success() => Ok(Some(ManifestHead {
                    digest: header_digest(&resp),
                    media_type: header_str(&resp, CONTENT_TYPE.as_str()),
                })),
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(t
                    .error_from(resp, "HEAD manifest", name, Subject::Manifest(reference))
                    .await),
            }
        })
        .await
    }

    /// GET a manifest. A body cut short (connection reset, early close) is
    /// retried like a failed request: a manifest is small and can simply
    /// be read again.
    pub async fn manifest_get(&self, at: &Selector) -> Result<FetchedManifest, RegistryError> {
        let (t, name, reference) = (self.transport(), self.name(), &at.to_string());
        let request = &self.label("GET", &format!("manifests/{reference}"));
        let req = manifest_request(Method::GET, self, reference);
        t.execute_with(&req, move |resp| async move {
            if !resp.status().is_success() {
                return Err(t
                    .error_from(resp, "GET manifest", name, Subject::Manifest(reference))
                    .await);
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
            {
                return Err(RegistryError::Protocol {
                    request: request.clone(),
                    reason: format!("manifest larger than {MAX_MANIFEST_BYTES} bytes"),
                });
            }
            let media_type = header_str(&resp, CONTENT_TYPE.as_str());
            let bytes = t.read_limited(resp, MAX_MANIFEST_BYTES, request).await?;
            Ok(FetchedManifest { bytes, media_type })
        })
        .await
    }

    /// PUT a manifest's exact bytes by its digest. Returns the digest the
    /// registry says it stored, if it says.
    pub async fn manifest_put(
        &self,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        self.put_manifest(&digest.to_string(), media_type, bytes)
            .await
    }

    /// DELETE a manifest by digest (or a tag, where the registry allows it).
    /// `false` when it was already gone.
    pub async fn manifest_delete(&self, at: &Selector) -> Result<bool, RegistryError> {
        let (t, name, reference) = (self.transport(), self.name(), &at.to_string());
        let req = Request::new(Method::DELETE, self.url(&format!("manifests/{reference}")));
        t.execute_with(&req, move |resp| async move {
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(t
                    .error_from(resp, "DELETE manifest", name, Subject::Manifest(reference))
                    .await),
            }
        })
        .await
    }

    /// PUT under a digest or a tag ([`Repository::tag_put`]).
    pub(super) async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        let (t, name) = (self.transport(), self.name());
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::Protocol {
                request: format!("PUT manifest {reference}"),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?;
        let req = Request::new(Method::PUT, self.url(&format!("manifests/{reference}")))
            .header(CONTENT_TYPE, content_type)
            .body(bytes);
        t.execute_with(&req, move |resp| async move {
            if resp.status().is_success() {
                Ok(header_digest(&resp))
            } else {
                Err(t
                    .error_from(resp, "PUT manifest", name, Subject::Manifest(reference))
                    .await)
            }
        })
        .await
    }
}

fn manifest_request(method: Method, repository: &Repository, reference: &str) -> Request {
    Request::new(method, repository.url(&format!("manifests/{reference}")))
        .header(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS))
}
