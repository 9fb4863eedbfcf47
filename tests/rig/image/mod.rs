//! Deterministic test images written as OCI image layouts, without docker.
//!
//! Layers are real `tar.gz` blobs (one file of seeded random bytes, gzip with
//! stored blocks so the blob is about the requested size and cheap to make),
//! hashed while written so a 1 GiB layer never sits in memory (`layer.rs`).

mod layer;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::sha256_digest;
use layer::{write_layer, LayerBlob};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const ARTIFACT_TYPE: &str = "application/vnd.example.sbom.v1";
pub const ARTIFACT_CONFIG: &str = "application/vnd.example.config.v1+json";
pub const ARTIFACT_LAYER: &str = "application/vnd.example.sbom.v1+json";

/// Annotation naming a tag in a layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Fixed so that the same spec always yields the same digests.
const CREATED: &str = "2024-01-01T00:00:00Z";
const MTIME: u64 = 1_704_067_200;
const CHUNK: usize = 1 << 20;

/// Whether manifests, configs and layers use OCI or Docker v2s2 media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    pub fn manifest(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    pub fn index(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        }
    }
    pub fn config(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }
    pub fn layer(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER,
            Format::Docker => DOCKER_LAYER,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Parses "os/arch" or "os/arch/variant", e.g. "linux/arm64/v8".
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split('/').collect::<Vec<_>>()[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch)),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                variant: Some(v.into()),
                ..Platform::new(os, arch)
            }),
            _ => Err(format!("platform {s:?} is not os/arch[/variant]")),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What to build. Equal specs give byte-identical layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Approximate size in bytes of each layer's compressed blob.
    pub layers: Vec<u64>,
    /// Empty: a single image for linux/amd64. Otherwise an index (manifest
    /// list) with one image per platform.
    pub platforms: Vec<Platform>,
    /// Multi-arch only: this many leading layers are byte-identical across
    /// platforms; the rest differ.
    pub shared_layers: usize,
    pub format: Format,
    pub seed: u64,
    /// An OCI artifact (`artifactType`, custom config, one JSON layer of
    /// about `layers[0]` bytes) instead of an image.
    pub artifact: bool,
}

impl ImageSpec {
    /// Single-arch OCI image with layers of these sizes.
    pub fn single(layers: &[u64]) -> Self {
        ImageSpec {
            layers: layers.to_vec(),
            platforms: Vec::new(),
            shared_layers: 0,
            format: Format::Oci,
            seed: 1,
            artifact: false,
        }
    }

    /// OCI index of one image per platform; the first `shared` layers are common.
    pub fn multi_arch(platforms: &[Platform], layers: &[u64], shared: usize) -> Self {
        ImageSpec {
            platforms: platforms.to_vec(),
            shared_layers: shared,
            ..Self::single(layers)
        }
    }

    /// OCI artifact with a 4 KiB SBOM-like layer.
    pub fn artifact() -> Self {
        ImageSpec {
            artifact: true,
            ..Self::single(&[4096])
        }
    }

    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub fn docker(self) -> Self {
        self.with_format(Format::Docker)
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// An OCI image layout on disk holding one tagged image (or more, if several
/// were built into the same directory).
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub dir: PathBuf,
    pub tag: String,
    /// "sha256:..." of the top manifest (image manifest or index).
    pub digest: String,
    pub media_type: String,
    /// (digest, media type) of every manifest, the top one first, then the
    /// children of an index in platform order.
    pub manifests: Vec<(String, String)>,
    /// (digest, size) of every distinct config and layer blob.
    pub blobs: Vec<(String, u64)>,
    pub total_blob_bytes: u64,
}

impl Layout {
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        let p = self.blob_path(digest);
        fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// Bytes of the top manifest.
    pub fn manifest_bytes(&self) -> Vec<u8> {
        self.read_blob(&self.digest)
    }

    /// skopeo's name for this image: "oci:<dir>:<tag>".
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    dir.join("blobs/sha256").join(hex)
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    fn new(media_type: &str, digest: String, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: String,
    manifests: Vec<Descriptor>,
}

struct Builder {
    dir: PathBuf,
    blobs: Vec<(String, u64)>,
    /// Layers by (size, seed): shared layers are written once.
    layers: HashMap<(u64, u64), LayerBlob>,
}

impl Builder {
    fn note_blob(&mut self, digest: &str, size: u64) {
        if !self.blobs.iter().any(|(d, _)| d == digest) {
            self.blobs.push((digest.to_string(), size));
        }
    }

    fn put_json<T: Serialize>(&self, value: &T) -> (String, u64, Vec<u8>) {
        let bytes = serde_json::to_vec(value).expect("serialising JSON");
        let digest = sha256_digest(&bytes);
        let p = blob_path(&self.dir, &digest);
        fs::write(&p, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        (digest, bytes.len() as u64, bytes)
    }

    fn layer(&mut self, size: u64, seed: u64) -> LayerBlob {
        if let Some(l) = self.layers.get(&(size, seed)) {
            return l.clone();
        }
        let l = write_layer(&self.dir, size, seed)
            .unwrap_or_else(|e| panic!("writing layer in {}: {e}", self.dir.display()));
        self.layers.insert((size, seed), l.clone());
        l
    }

    /// Writes one image (config, layers, manifest); returns its manifest descriptor.
    fn image(&mut self, spec: &ImageSpec, platform: &Platform, stream: u64) -> Descriptor {
        let f = spec.format;
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, &size) in spec.layers.iter().enumerate() {
            // Shared layers come from stream 0 in every platform's image.
            let s = if i < spec.shared_layers { 0 } else { stream };
            let l = self.layer(size, mix(spec.seed, s, i as u64));
            self.note_blob(&l.digest, l.size);
            layers.push(Descriptor::new(f.layer(), l.digest, l.size));
            diff_ids.push(l.diff_id);
        }
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "created": CREATED,
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        let (cd, cs, _) = self.put_json(&config);
        self.note_blob(&cd, cs);
        let manifest = Manifest {
            schema_version: 2,
            media_type: f.manifest().into(),
            artifact_type: None,
            config: Descriptor::new(f.config(), cd, cs),
            layers,
        };
        let (md, ms, _) = self.put_json(&manifest);
        Descriptor::new(f.manifest(), md, ms)
    }

    fn artifact(&mut self, spec: &ImageSpec) -> Descriptor {
        assert_eq!(spec.format, Format::Oci, "artifacts are OCI only");
        let config = json!({ "generator": "ecr-bridge rig", "seed": spec.seed });
        let (cd, cs, _) = self.put_json(&config);
        self.note_blob(&cd, cs);
        let (ld, ls, _) = self.put_json(&sbom(
            spec.layers.first().copied().unwrap_or(4096),
            spec.seed,
        ));
        self.note_blob(&ld, ls);
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            artifact_type: Some(ARTIFACT_TYPE.into()),
            config: Descriptor::new(ARTIFACT_CONFIG, cd, cs),
            layers: vec![Descriptor::new(ARTIFACT_LAYER, ld, ls)],
        };
        let (md, ms, _) = self.put_json(&manifest);
        Descriptor::new(OCI_MANIFEST, md, ms)
    }
}

/// Builds the image `spec` describes into the OCI layout at `dir` (created if
/// needed) under `tag`. Other tags already in the layout are kept, so several
/// images can share one directory and its blobs.
pub fn build_layout(dir: &Path, tag: &str, spec: &ImageSpec) -> Layout {
    fs::create_dir_all(dir.join("blobs/sha256"))
        .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let mut b = Builder {
        dir: dir.to_path_buf(),
        blobs: Vec::new(),
        layers: HashMap::new(),
    };
    let mut manifests = Vec::new();
    let top = if spec.artifact {
        assert!(spec.platforms.is_empty(), "an artifact has no platforms");
        b.artifact(spec)
    } else if spec.platforms.is_empty() {
        b.image(spec, &Platform::new("linux", "amd64"), 1)
    } else {
        let mut children = Vec::new();
        for (i, p) in spec.platforms.iter().enumerate() {
            let mut d = b.image(spec, p, i as u64 + 1);
            d.platform = Some(p.clone());
            manifests.push((d.digest.clone(), d.media_type.clone()));
            children.push(d);
        }
        let index = Index {
            schema_version: 2,
            media_type: spec.format.index().into(),
            manifests: children,
        };
        let (d, s, _) = b.put_json(&index);
        Descriptor::new(spec.format.index(), d, s)
    };
    manifests.insert(0, (top.digest.clone(), top.media_type.clone()));
    write_index_json(dir, tag, &top);
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("writing oci-layout");
    let total_blob_bytes = b.blobs.iter().map(|(_, s)| s).sum();
    Layout {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        digest: top.digest,
        media_type: top.media_type,
        manifests,
        blobs: b.blobs,
        total_blob_bytes,
    }
}

/// Adds (or replaces) `tag` in the layout's index.json, keeping other tags.
fn write_index_json(dir: &Path, tag: &str, top: &Descriptor) {
    let path = dir.join("index.json");
    let mut entries: Vec<serde_json::Value> = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default();
    entries.retain(|e| e["annotations"][REF_NAME] != tag);
    let mut d = top.clone();
    d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), tag.to_string())]));
    entries.push(serde_json::to_value(d).expect("descriptor to JSON"));
    let index = json!({ "schemaVersion": 2, "manifests": entries });
    fs::write(&path, serde_json::to_vec(&index).expect("index to JSON"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// splitmix64 over the inputs: distinct, well-spread seeds per (image seed,
/// platform stream, layer index).
fn mix(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A made-up SBOM of about `target` bytes.
fn sbom(target: u64, seed: u64) -> serde_json::Value {
    let mut packages = Vec::new();
    let mut len = 100;
    while len < target {
        let p = json!({ "name": format!("pkg-{}", packages.len()), "version": format!("1.{}.{seed}", packages.len()) });
        len += p.to_string().len() as u64 + 1;
        packages.push(p);
    }
    json!({ "spdxVersion": "SPDX-2.3", "name": format!("rig-sbom-{seed}"), "packages": packages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_json(l: &Layout, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&l.read_blob(digest)).unwrap()
    }

    #[test]
    fn digests_and_diff_ids_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let l = build_layout(dir.path(), "v1", &ImageSpec::single(&[3000, 200_000]));
        // Every blob file is named by the hash of its content and has the recorded size.
        for (d, s) in &l.blobs {
            let bytes = l.read_blob(d);
            assert_eq!((&sha256_digest(&bytes), bytes.len() as u64), (d, *s));
        }
        for (d, _) in &l.manifests {
            assert_eq!(&sha256_digest(&l.read_blob(d)), d);
        }
        let m = read_json(&l, &l.digest);
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        let config = read_json(&l, m["config"]["digest"].as_str().unwrap());
        for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&l.read_blob(layer["digest"].as_str().unwrap())[..])
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(config["rootfs"]["diff_ids"][i], sha256_digest(&tar));
            let mut archive = tar::Archive::new(&tar[..]);
            assert_eq!(archive.entries().unwrap().count(), 1);
        }
        let size = l
            .blobs
            .iter()
            .find(|(d, _)| d == m["layers"][1]["digest"].as_str().unwrap())
            .unwrap()
            .1;
        assert!((199_000..=201_000).contains(&size), "layer size {size}");
        // index.json names the manifest by tag.
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], l.digest.as_str());
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "v1");
    }

    #[test]
    fn deterministic_and_shared_layers() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plats = [
            Platform::new("linux", "amd64"),
            Platform::parse("linux/arm64/v8").unwrap(),
        ];
        let spec = ImageSpec::multi_arch(&plats, &[1000, 2000, 3000], 1).docker();
        let la = build_layout(a.path(), "t", &spec);
        let lb = build_layout(b.path(), "t", &spec);
        assert_eq!(la.digest, lb.digest);
        assert_eq!(la.media_type, DOCKER_LIST);
        assert_eq!(la.manifests.len(), 3);
        // 1 shared + 2x2 own layers + 2 configs.
        assert_eq!(la.blobs.len(), 7);
        let idx = read_json(&la, &la.digest);
        assert_eq!(idx["manifests"][1]["platform"]["variant"], "v8");
        let m0 = read_json(&la, &la.manifests[1].0);
        let m1 = read_json(&la, &la.manifests[2].0);
        assert_eq!(m0["layers"][0], m1["layers"][0]);
        assert_ne!(m0["layers"][1], m1["layers"][1]);
        assert_eq!(m0["config"]["mediaType"], DOCKER_CONFIG);
        let other = build_layout(b.path(), "u", &spec.clone().with_seed(9));
        assert_ne!(other.digest, la.digest);
        // Both tags stay in the shared layout.
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(b.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn artifact_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let l = build_layout(dir.path(), "sbom", &ImageSpec::artifact());
        let m = read_json(&l, &l.digest);
        assert_eq!(m["artifactType"], ARTIFACT_TYPE);
        assert_eq!(m["config"]["mediaType"], ARTIFACT_CONFIG);
        assert_eq!(m["layers"][0]["mediaType"], ARTIFACT_LAYER);
        assert!((3900..4300).contains(&l.blobs[1].1), "{:?}", l.blobs);
    }
}
