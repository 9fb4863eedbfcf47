//! skopeo as the reference client: it pushes test images (a peer that is not
//! our code) and reads registries back (the oracle for "same image").

use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::image::{Layout, OCI_INDEX, OCI_MANIFEST};
use crate::registry::Registry;
use crate::sha256_digest;
use crate::tls::{rig_tls, ServerCert};

/// skopeo's TLS flags for `reg` (`side`: "src", "dest" or "" for inspect):
/// a plain registry gets `--tls-verify=false` (skopeo then falls back to
/// HTTP); one with the rig CA's certificate is verified against it
/// (`--cert-dir`); any other certificate (set up to be refused) is not
/// verified.
pub fn tls_args(reg: &Registry, side: &str) -> Vec<String> {
    let flag = |name: &str| match side {
        "" => format!("--{name}"),
        s => format!("--{s}-{name}"),
    };
    match reg.tls() {
        Some(ServerCert::Rig) => vec![flag("cert-dir"), rig_tls().cert_dir().display().to_string()],
        _ => vec![format!("{}=false", flag("tls-verify"))],
    }
}

fn args_of(owned: &[String]) -> impl Iterator<Item = &str> {
    owned.iter().map(String::as_str)
}

/// Runs skopeo; Ok(stdout) or Err(command line and stderr).
pub fn skopeo(args: &[&str]) -> Result<Vec<u8>, String> {
    // --insecure-policy: don't depend on the machine's /etc/containers/policy.json.
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .map_err(|e| format!("running skopeo (apt-get install skopeo): {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "skopeo {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Pushes every manifest and blob of `layout` to `registry` as `repo_and_tag`,
/// keeping digests and media types (Docker-format layouts stay Docker), and
/// asserts the registry serves the layout's top manifest byte for byte.
///
/// skopeo 1.9's `oci:` transport only finds index.json entries of OCI media
/// types, so a Docker-format layout is pushed through a `dir:` view of it
/// instead (see [`dir_view`]).
pub fn skopeo_push(layout: &Layout, registry: &Registry, repo_and_tag: &str) {
    let creds = registry.creds();
    let dest = format!("docker://{}/{repo_and_tag}", registry.host());
    let view; // keeps the dir: view alive during the copy
    let src = if matches!(layout.media_type.as_str(), OCI_MANIFEST | OCI_INDEX) {
        layout.oci_ref()
    } else {
        view = dir_view(layout);
        format!("dir:{}", view.path().display())
    };
    let tls = tls_args(registry, "dest");
    let args: Vec<&str> = ["copy", "--all", "--preserve-digests", "--quiet"]
        .into_iter()
        .chain(args_of(&tls))
        .chain(["--dest-creds", &creds, &src, &dest])
        .collect();
    skopeo(&args).unwrap_or_else(|e| panic!("{e}"));
    let pushed = skopeo_inspect_raw(registry, repo_and_tag).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        pushed == layout.manifest_bytes(),
        "skopeo pushed {} as {} but the layout's top manifest is {}",
        repo_and_tag,
        sha256_digest(&pushed),
        layout.digest
    );
}

/// Lays `layout`'s image out for skopeo's `dir:` transport (format 1.1) in a
/// temporary directory: `manifest.json` for the top manifest,
/// `<hex>.manifest.json` for each child of an index, and every blob as
/// `<hex>`, symlinked to the layout. The dir transport takes the media type
/// from the manifest's own `mediaType`, so Docker manifests stay Docker.
pub fn dir_view(layout: &Layout) -> tempfile::TempDir {
    let view = tempfile::Builder::new()
        .prefix("rig-dir-")
        .tempdir()
        .expect("creating dir: view");
    let hex = |d: &str| {
        d.strip_prefix("sha256:")
            .expect("sha256 digest")
            .to_string()
    };
    let put = |name: String, bytes: &[u8]| {
        fs::write(view.path().join(name), bytes).expect("writing dir: view");
    };
    put("version".into(), b"Directory Transport Version: 1.1\n");
    put("manifest.json".into(), &layout.manifest_bytes());
    for (d, _) in layout.manifests.iter().skip(1) {
        put(format!("{}.manifest.json", hex(d)), &layout.read_blob(d));
    }
    for (d, _) in &layout.blobs {
        std::os::unix::fs::symlink(layout.blob_path(d), view.path().join(hex(d)))
            .expect("linking blob into dir: view");
    }
    view
}

/// Copies `src_ref` ("repo:tag" or "repo@sha256:...") of `src` to `dst_ref`
/// of `dst` the way a careful client would: all platforms, digests kept.
pub fn skopeo_copy(
    src: &Registry,
    src_ref: &str,
    dst: &Registry,
    dst_ref: &str,
) -> Result<(), String> {
    let (sc, dc) = (src.creds(), dst.creds());
    let from = format!("docker://{}/{src_ref}", src.host());
    let to = format!("docker://{}/{dst_ref}", dst.host());
    let (st, dt) = (tls_args(src, "src"), tls_args(dst, "dest"));
    let args: Vec<&str> = ["copy", "--all", "--preserve-digests", "--quiet"]
        .into_iter()
        .chain(args_of(&st))
        .chain(["--src-creds", &sc])
        .chain(args_of(&dt))
        .chain(["--dest-creds", &dc, &from, &to])
        .collect();
    skopeo(&args).map(drop)
}

/// The manifest bytes exactly as the registry serves them.
pub fn skopeo_inspect_raw(registry: &Registry, reference: &str) -> Result<Vec<u8>, String> {
    let creds = registry.creds();
    let r = format!("docker://{}/{reference}", registry.host());
    let tls = tls_args(registry, "");
    let args: Vec<&str> = ["inspect", "--raw"]
        .into_iter()
        .chain(args_of(&tls))
        .chain(["--creds", &creds, &r])
        .collect();
    skopeo(&args)
}

/// "sha256:<hex>" of the raw manifest of `reference`.
pub fn skopeo_digest(registry: &Registry, reference: &str) -> Result<String, String> {
    skopeo_inspect_raw(registry, reference).map(|b| sha256_digest(&b))
}

/// Repository part of "repo:tag" or "repo@sha256:...".
pub fn repo_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

/// Panics unless `dst_ref` in `dst` is the same image as `src_ref` in `src`:
/// identical top manifest bytes, every child manifest of an index present in
/// dst with identical bytes, and every config and layer blob present in dst
/// with the size its descriptor states.
pub fn assert_same_image(src: &Registry, src_ref: &str, dst: &Registry, dst_ref: &str) {
    let (src_repo, dst_repo) = (repo_of(src_ref), repo_of(dst_ref));
    let top = same_manifest(src, src_ref, dst, dst_ref);
    let json = parse(&top, dst_ref);
    match json["manifests"].as_array() {
        Some(children) => {
            for child in children {
                let digest = child["digest"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{dst_ref}: child without digest"));
                let bytes = same_manifest(
                    src,
                    &format!("{src_repo}@{digest}"),
                    dst,
                    &format!("{dst_repo}@{digest}"),
                );
                assert_blobs(dst, dst_repo, &parse(&bytes, digest), digest);
            }
        }
        None => assert_blobs(dst, dst_repo, &json, dst_ref),
    }
}

/// Fetches both manifests, panics unless byte-identical; returns the bytes.
fn same_manifest(src: &Registry, src_ref: &str, dst: &Registry, dst_ref: &str) -> Vec<u8> {
    let s = skopeo_inspect_raw(src, src_ref)
        .unwrap_or_else(|e| panic!("source manifest {src_ref}: {e}"));
    let d = skopeo_inspect_raw(dst, dst_ref)
        .unwrap_or_else(|e| panic!("destination manifest {dst_ref} missing: {e}"));
    assert!(
        s == d,
        "manifest differs: source {src_ref} is {} ({} bytes), destination {dst_ref} is {} ({} bytes)\n\
         source:      {}\ndestination: {}",
        sha256_digest(&s),
        s.len(),
        sha256_digest(&d),
        d.len(),
        String::from_utf8_lossy(&s),
        String::from_utf8_lossy(&d),
    );
    d
}

fn parse(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("manifest {what} is not JSON: {e}"))
}

/// HEADs the config and every layer of an image manifest in `repo` of `reg`.
fn assert_blobs(reg: &Registry, repo: &str, manifest: &Value, what: &str) {
    let blobs = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten())
        .filter(|d| !d.is_null());
    for d in blobs {
        let digest = d["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: descriptor without digest: {d}"));
        let size = d["size"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: descriptor without size: {d}"));
        let r = reg.http("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        assert_eq!(
            r.status,
            200,
            "blob {digest} of {what} missing from {}/{repo}: HEAD answered {}",
            reg.host(),
            r.status
        );
        let len = r
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        assert_eq!(
            len,
            Some(size),
            "blob {digest} of {what} in {}/{repo}: Content-Length {len:?}, descriptor says {size}",
            reg.host()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::repo_of;

    #[test]
    fn repo_of_references() {
        assert_eq!(repo_of("a/b:v1"), "a/b");
        assert_eq!(repo_of("a/b@sha256:00"), "a/b");
        assert_eq!(repo_of("a/b"), "a/b");
    }
}
