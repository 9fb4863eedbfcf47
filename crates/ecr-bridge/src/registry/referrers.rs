//! OCI 1.1 referrers: `/v2/<name>/referrers/<digest>`, an index of the
//! manifests (signatures, attestations, SBOMs) whose `subject` is a digest.

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::Method;

use super::client::Repository;
use super::error::RegistryError;
use super::response::header_str;
use super::transport::Request;
use crate::digest::Digest;
use crate::manifest::{Descriptor, Parsed, MAX_MANIFEST_BYTES, OCI_INDEX};

impl Repository {
    /// The referrers of a manifest, when the registry implements the
    /// referrers API (`None` otherwise: the caller falls back to the tag
    /// schema). An index that does not parse lists none.
    pub async fn referrers(
        &self,
        digest: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let t = self.transport();
        let request = &self.label("GET", &format!("referrers/{digest}"));
        let req = Request::new(Method::GET, self.url(&format!("referrers/{digest}")))
            .header(ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let index = t
            .execute_with(&req, move |resp| async move {
                let is_index = header_str(&resp, CONTENT_TYPE.as_str())
                    .is_some_and(|c| c.starts_with(OCI_INDEX));
                if resp.status().is_success() && is_index {
                    Ok(Some(
                        t.read_limited(resp, MAX_MANIFEST_BYTES, request).await?,
                    ))
                } else {
                    // 404/405/400: no referrers API.
                    Ok(None)
                }
            })
            .await?;
        Ok(
            index.map(|bytes| match Parsed::parse(&bytes, Some(OCI_INDEX)) {
                Ok(Parsed::Index { children, .. }) => children,
                _ => Vec::new(),
            }),
        )
    }
}
