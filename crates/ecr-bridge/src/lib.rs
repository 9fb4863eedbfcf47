//! ecr-bridge's domain logic: a registry client ([`registry`]), the image copy
//! engine ([`copy`]), references, digests, manifests and the identifiers every
//! part passes ([`ids`]). No Lambda or AWS SDK types live here; the functions
//! in `functions/` are thin adapters over this crate.

pub mod access;
pub mod copy;
pub mod digest;
pub mod ids;
pub mod manifest;
pub mod mapping;
pub mod reference;
pub mod registry;
pub mod text;

pub use copy::{CopyError, CopyOptions, CopyReport, ImageCopier};
pub use digest::Digest;
pub use reference::ImageReference;
pub use registry::{RegistryClient, Repository};
