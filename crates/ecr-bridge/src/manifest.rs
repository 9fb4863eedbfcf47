//! Manifest media types and the few manifest fields the copy needs.
//!
//! Manifests are never re-serialised: the bytes read from the source are the
//! bytes pushed to the target, so digests stay identical. Parsing only finds
//! what else has to be copied (children, config, layers).

use bytes::Bytes;
use serde::Deserialize;

use crate::digest::Digest;

pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Schema 1 is deprecated and ECR converts away from it; it is refused with a clear error.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest type we copy, for `Accept`. Sending all of them is what
/// stops ECR (and others) from converting the manifest and changing its digest.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Registries refuse manifests over 4 MiB; refusing to read more protects memory
/// against a hostile or broken source.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Layers that must not be pushed anywhere (Windows base layers and the like).
fn is_non_distributable(media_type: &str) -> bool {
    media_type.contains(".foreign.") || media_type.contains("nondistributable")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// A manifest list / index: copy each child manifest.
    Index,
    /// An image (or artifact) manifest: copy config and layers.
    Image,
}

pub fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST_V2 => Some(ManifestKind::Image),
        _ => None,
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// Blobs with external URLs of non-distributable type are referenced, never copied,
    /// exactly as docker and skopeo do.
    pub fn is_copyable_blob(&self) -> bool {
        !is_non_distributable(&self.media_type)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
}

/// What a manifest references.
// A handful live at once, briefly: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Index {
        media_type: String,
        children: Vec<Descriptor>,
    },
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
        subject: Option<Descriptor>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of a known shape: {0}")]
    Malformed(String),
    #[error("unsupported manifest media type {0:?} (supported: OCI manifest and index, Docker schema 2 manifest and list)")]
    UnsupportedMediaType(String),
    #[error("manifest of {size} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { size: usize },
}

impl Parsed {
    pub fn media_type(&self) -> &str {
        match self {
            Parsed::Index { media_type, .. } | Parsed::Image { media_type, .. } => media_type,
        }
    }

    /// Parses `bytes`, using the registry's `Content-Type` when it names a
    /// manifest type and the document's own `mediaType` otherwise (OCI lets
    /// it be absent; some registries answer a generic JSON type).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { size: bytes.len() });
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| c.starts_with("application/vnd."));
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(h), _) if h != DOCKER_MANIFEST_V1_SIGNED || raw.schema_version == Some(1) => {
                h.to_string()
            }
            (_, Some(m)) => m.to_string(),
            // An OCI document without mediaType: its shape decides.
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
            _ => {
                return Err(ManifestError::Malformed(
                    "no media type and no recognisable shape".into(),
                ))
            }
        };
        if raw.schema_version != Some(2) {
            return Err(ManifestError::UnsupportedMediaType(media_type));
        }
        match kind_of(&media_type) {
            Some(ManifestKind::Index) => Ok(Parsed::Index {
                media_type,
                children: raw.manifests.ok_or_else(|| {
                    ManifestError::Malformed("index without \"manifests\"".into())
                })?,
            }),
            Some(ManifestKind::Image) => Ok(Parsed::Image {
                media_type,
                config: raw.config.ok_or_else(|| {
                    ManifestError::Malformed("image manifest without \"config\"".into())
                })?,
                layers: raw.layers.unwrap_or_default(),
                subject: raw.subject,
            }),
            None => Err(ManifestError::UnsupportedMediaType(media_type)),
        }
    }

    /// Config and layer blobs to copy (deduplicated, non-distributable layers left out).
    pub fn blobs(&self) -> Vec<Descriptor> {
        match self {
            Parsed::Index { .. } => Vec::new(),
            Parsed::Image { config, layers, .. } => {
                // A set, not a scan of `out`: a 4 MiB manifest lists ~30,000 layers.
                let mut seen = std::collections::HashSet::with_capacity(layers.len() + 1);
                std::iter::once(config)
                    .chain(layers.iter())
                    .filter(|d| d.is_copyable_blob() && seen.insert(&d.digest))
                    .cloned()
                    .collect()
            }
        }
    }
}

/// A manifest's bytes exactly as read (they are pushed as they are, so
/// digests stay), with what they reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Bytes,
    pub parsed: Parsed,
}

impl Manifest {
    /// Parses `bytes` ([`Parsed::parse`]) and keeps them.
    pub fn parse(bytes: Bytes, content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let parsed = Parsed::parse(&bytes, content_type)?;
        Ok(Manifest { bytes, parsed })
    }

    pub fn media_type(&self) -> &str {
        self.parsed.media_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn given_oci_manifest_when_parsed_then_config_and_layers_are_blobs() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":10}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":20}},
                      {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":20}}]}}"#,
            d(1),
            d(2),
            d(2)
        );
        let p = Parsed::parse(json.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.media_type(), OCI_MANIFEST);
        let blobs = p.blobs();
        assert_eq!(blobs.len(), 2, "duplicate layer copied once");
        assert_eq!(blobs[0].digest.to_string(), d(1));
    }

    #[test]
    fn given_docker_list_with_generic_content_type_when_parsed_then_document_type_is_used() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}",
            "manifests":[{{"mediaType":"{DOCKER_MANIFEST_V2}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            d(3)
        );
        let p = Parsed::parse(json.as_bytes(), Some("application/json")).unwrap();
        match p {
            Parsed::Index {
                media_type,
                children,
            } => {
                assert_eq!(media_type, DOCKER_MANIFEST_LIST);
                assert_eq!(children.len(), 1);
            }
            other => panic!("expected index, got {other:?}"),
        }
    }

    #[test]
    fn given_oci_index_without_media_type_when_parsed_then_shape_decides() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":5}}]}}"#,
            d(4)
        );
        assert_eq!(
            Parsed::parse(json.as_bytes(), None).unwrap().media_type(),
            OCI_INDEX
        );
    }

    #[test]
    fn given_artifact_with_custom_config_when_parsed_then_it_is_an_image_shape() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sbom.v1",
            "config":{{"mediaType":"application/vnd.example.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.example.sbom.v1+json","digest":"{}","size":9}}]}}"#,
            d(5),
            d(6)
        );
        let p = Parsed::parse(json.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.blobs().len(), 2);
    }

    #[test]
    fn given_foreign_layer_when_listing_blobs_then_it_is_not_copied() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_V2}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":9,"urls":["https://example.invalid/x"]}}]}}"#,
            d(7),
            d(8)
        );
        let p = Parsed::parse(json.as_bytes(), None).unwrap();
        assert_eq!(p.blobs().len(), 1);
    }

    #[test]
    fn given_unsupported_or_broken_documents_when_parsed_then_specific_errors() {
        assert!(matches!(
            Parsed::parse(
                b"{\"schemaVersion\":1,\"name\":\"x\"}",
                Some(DOCKER_MANIFEST_V1_SIGNED)
            ),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Parsed::parse(b"not json", None),
            Err(ManifestError::Malformed(_))
        ));
        assert!(matches!(
            Parsed::parse(
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#).as_bytes(),
                None
            ),
            Err(ManifestError::Malformed(_))
        ));
        assert!(matches!(
            Parsed::parse(&vec![b' '; MAX_MANIFEST_BYTES + 1], None),
            Err(ManifestError::TooLarge { .. })
        ));
    }
}
