//! Test rig for ecr-bridge: real `docker-registry` processes on loopback,
//! deterministic test images written as OCI layouts, and skopeo as both a
//! peer (to push test images) and an oracle (to check what arrived).
//!
//! Needs `docker-registry` (distribution 2.8), `skopeo` and `htpasswd` on
//! PATH. It does not depend on the `ecr-bridge` crate, so the `rig` binary
//! builds on its own for shell scripts.
//!
//! Everything is plain HTTP unless asked for TLS ([`RegistryOptions::tls`],
//! [`ProxyOptions::tls`], and a TLS registry's blob host): then the rig's own
//! CA ([`rig_tls`]) signs the certificates, and [`trust_rig_ca`] makes the
//! code under test trust it through `SSL_CERT_FILE`.
//!
//! ```no_run
//! use rig::{assert_same_image, build_layout, skopeo_copy, skopeo_push, ImageSpec, Registry};
//!
//! let src = Registry::start("111111111111");
//! let dst = Registry::start("222222222222");
//! let dir = tempfile::tempdir().unwrap();
//! let layout = build_layout(dir.path(), "v1", &ImageSpec::single(&[1 << 20, 2 << 20]));
//! skopeo_push(&layout, &src, "app:v1");
//!
//! let mark = dst.request_mark();
//! skopeo_copy(&src, "app:v1", &dst, "mirror/app:v1").unwrap();
//! assert_same_image(&src, "app:v1", &dst, "mirror/app:v1");
//! let puts = dst.requests_since(mark).iter().filter(|r| r.method == "PUT").count();
//! assert!(puts >= 3); // two layers, a config, a manifest
//! ```

mod aws_front;
mod blob_host;
#[cfg(test)]
mod e2e;
#[cfg(test)]
mod ecr_e2e;
mod fault_proxy;
mod gate;
mod image;
mod moto;
mod registry;
mod runtime_api;
mod skopeo;
mod tls;
#[cfg(test)]
mod tls_e2e;
mod wire;

pub use aws_front::{AwsCall, AwsFront, AwsFrontOptions};
pub use blob_host::{BlobHost, BlobHostRequest};
pub use fault_proxy::{
    long_tag_alias, EcrApi, EcrQuotas, FaultProxy, FaultRates, MountBehaviour, ProxyOptions,
    ProxyStats, Repositories, TokenHandle, TokenRotation,
};
pub use gate::Gate;
pub use image::*;
pub use moto::{moto_command, moto_create_repository, moto_repository, Moto, DEFAULT_ACCOUNT};
pub use registry::{Registry, RegistryOptions, RequestRecord, USER};
pub use runtime_api::{InvocationResult, RuntimeApi};
pub use skopeo::{
    assert_same_image, dir_view, repo_of, skopeo, skopeo_copy, skopeo_digest, skopeo_inspect_raw,
    skopeo_push, tls_args as skopeo_tls_args,
};
pub use tls::{rig_tls, trust_rig_ca, Leaf, RigTls, ServerCert};
pub use wire::RawResponse;

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// "sha256:<hex>", the OCI digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// One raw HTTP/1.1 request to `host`: "127.0.0.1:PORT" (plain HTTP) or
/// "https://127.0.0.1:PORT" (TLS, accepting any certificate the rig made),
/// for talking to a registry without credentials or with hand-made headers.
/// [`Registry::target`] and [`FaultProxy::target`] give the right one.
pub fn http_request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    wire::request(host, method, path, headers, body)
}

/// Parses sizes like "1M", "300M", "1G", "512K", "4096" (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("size {s:?}: unit must be K, M or G")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("size {s:?} is not a number"))
}
