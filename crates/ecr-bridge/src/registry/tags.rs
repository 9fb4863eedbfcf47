//! Tags: names for manifests, read by HEAD and set by PUTting the
//! manifest's bytes under the name (for ECR, one PutImage does both).

use bytes::Bytes;

use super::client::Repository;
use super::error::RegistryError;
use super::manifests::ManifestHead;
use crate::digest::Digest;
use crate::reference::Selector;

impl Repository {
    /// The digest `tag` points at; `None` when the tag (or the repository)
    /// does not exist. From the HEAD's `Docker-Content-Digest`, else (a
    /// registry that does not send it) the digest of the bytes a GET serves.
    pub async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let at = Selector::Tag(tag.to_string());
        match self.manifest_head(&at).await? {
            None => Ok(None),
            Some(ManifestHead {
                digest: Some(d), ..
            }) => Ok(Some(d)),
            Some(_) => match self.manifest_get(&at).await {
                Ok(m) => Ok(Some(Digest::sha256_of(&m.bytes))),
                Err(
                    RegistryError::ManifestNotFound { .. }
                    | RegistryError::RepositoryNotFound { .. },
                ) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Points `tag` at a manifest by PUTting its exact bytes under the tag.
    /// Returns the digest the registry says it stored, if it says.
    pub async fn tag_put(
        &self,
        tag: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        self.put_manifest(tag, media_type, bytes).await
    }
}
