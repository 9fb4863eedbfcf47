//! Blobs: `/v2/<name>/blobs/<digest>` and upload sessions. Reads follow
//! redirects (ECR: presigned S3 URLs) without our credentials; an upload is
//! one streaming PUT with `Content-Length`, never chunked PATCHes (ECR
//! mishandles them).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::client::Repository;
use super::error::RegistryError;
use super::redirect;
use super::response::{header_digest, header_str};
use super::status::Subject;
use super::throttle::ApiClass;
use super::transport::{Once, Request};
use crate::digest::Digest;

/// The start of a blob upload.
#[derive(Debug)]
pub enum UploadStart {
    /// The registry linked the blob from another repository: nothing to send.
    Mounted,
    /// Send the content to this upload session.
    Session(Url),
}

/// A blob's content, streamed.
pub struct BlobReader {
    pub size: Option<u64>,
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
}

impl Repository {
    /// HEAD a blob: its size when present. Some registries redirect a HEAD
    /// too; a redirect followed to a success means the blob exists.
    pub async fn blob_head(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let t = self.transport();
        let req = Request::new(Method::HEAD, self.url(&format!("blobs/{digest}")));
        let resp = t.execute_following(req).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(t
                .error_from(resp, "HEAD blob", self.name(), Subject::Blob(digest))
                .await),
        }
    }

    /// GET a blob as a stream that fails when it stalls for the idle timeout.
    pub async fn blob_get(&self, digest: &Digest) -> Result<BlobReader, RegistryError> {
        let t = self.transport();
        let req = Request::new(Method::GET, self.url(&format!("blobs/{digest}")));
        let resp = t.execute_following(req).await?;
        if !resp.status().is_success() {
            return Err(t
                .error_from(resp, "GET blob", self.name(), Subject::Blob(digest))
                .await);
        }
        let request = self.label("GET", &format!("blobs/{digest}"));
        Ok(BlobReader {
            size: resp.content_length(),
            stream: Box::pin(t.body_stream(resp, request)),
        })
    }

    /// Opens an upload; with `mount` (a digest and the repository holding
    /// it), asks the registry to link the blob from that repository of the
    /// same registry instead.
    pub async fn upload_start(
        &self,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart, RegistryError> {
        let t = self.transport();
        let mut url = self.url("blobs/uploads/");
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let req = Request::new(Method::POST, url.clone()).body(Bytes::new());
        let resp = match t.execute(&req).await {
            // ECR refuses a mount the caller may not read the source of
            // (ecr:GetDownloadUrlForLayer) with 403: the blob can still be
            // uploaded, so ask again without the mount.
            Err(RegistryError::Denied { message, .. }) if mount.is_some() => {
                tracing::debug!(repository = self.name(), message = %message, "mount refused; uploading instead");
                return Box::pin(self.upload_start(None)).await;
            }
            other => other?,
        };
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let request = self.label("POST", "blobs/uploads/");
                let location = header_str(&resp, LOCATION.as_str()).ok_or_else(|| {
                    RegistryError::Protocol {
                        request: request.clone(),
                        reason: "202 without Location".into(),
                    }
                })?;
                // The upload's bytes go wherever this points: the endpoint's
                // HTTPS rule applies to it as to the endpoint itself.
                let session =
                    redirect::follow(t.endpoint(), &request, "upload Location", &url, &location)?;
                Ok(UploadStart::Session(session))
            }
            _ => Err(t
                .error_from(resp, "POST upload", self.name(), Subject::Upload)
                .await),
        }
    }

    /// Completes an upload session with the whole blob in one streaming PUT.
    /// Sent once: a stream cannot be replayed, so on failure the caller
    /// starts over from the source.
    pub async fn upload_put(
        &self,
        session: Url,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), RegistryError> {
        let t = self.transport();
        let mut url = session;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let resp = t
            .send_once(Once {
                method: Method::PUT,
                url,
                headers,
                body: Some(body),
                body_len: size,
                label: self.label("PUT", &format!("blobs/uploads/ ({digest})")),
                wait: t.timeouts().upload_deadline(size),
                phase: "uploading the blob and waiting for the answer",
                api: ApiClass::CompleteUpload,
            })
            .await?;
        if !resp.status().is_success() {
            return Err(t
                .error_from(resp, "PUT blob", self.name(), Subject::Blob(digest))
                .await);
        }
        match header_digest(&resp) {
            Some(d) if &d != digest => Err(RegistryError::DigestMismatch {
                digest: digest.to_string(),
                actual: d.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Best-effort cancel of an abandoned upload session.
    pub async fn upload_cancel(&self, session: Url) {
        let t = self.transport();
        let _ = t.send_once(t.once(Method::DELETE, session)).await;
    }
}
