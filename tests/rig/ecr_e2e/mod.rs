//! The ECR behaviours of [`FaultProxy`] and the [`AwsFront`], driven with
//! raw HTTP against real registries (and moto), checking what the client
//! gets and what reached the registry: one module a behaviour, the shared
//! helpers here. Needs docker-registry, htpasswd and (for the AWS front and
//! `Repositories::Moto`) moto.

mod aws_front;
mod create_on_push;
mod earlier;
mod long_tags;
mod mounts;
mod quotas;
mod referrers;
mod tokens;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::*;

const ACCOUNT: &str = "222222222222";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

/// A front for `reg` with these options.
fn front(reg: &Registry, opts: ProxyOptions) -> FaultProxy {
    FaultProxy::start(reg, opts)
}

/// A front for `reg` whose tokens expire `lifetime` after they are issued.
fn expiring(reg: &Registry, lifetime: Duration) -> FaultProxy {
    front(
        reg,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring { lifetime }),
            ..ProxyOptions::default()
        },
    )
}

/// `GET /v2/` through `proxy` as `user:password`.
fn ping(proxy: &FaultProxy, user: &str, password: &str) -> RawResponse {
    http_request(
        &proxy.host(),
        "GET",
        "/v2/",
        &[("Authorization", &basic(user, password))],
        b"",
    )
    .unwrap()
}

/// A request without a body through `proxy`, with the registry's credentials.
fn send(proxy: &FaultProxy, reg: &Registry, method: &str, path: &str) -> RawResponse {
    reg.http_at(&proxy.host(), method, path, &[], b"")
}

/// A manifest PUT to `path` through `proxy`, with the registry's credentials.
fn put_manifest(
    proxy: &FaultProxy,
    reg: &Registry,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> RawResponse {
    let ct = [("Content-Type", content_type)];
    reg.http_at(&proxy.host(), "PUT", path, &ct, body)
}

/// Sends `request` as is and returns everything the server sent back.
fn raw_exchange(host: &str, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(host).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The body bytes after the head of a raw answer.
fn raw_body(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    &raw[end + 4..]
}

fn error_of(r: &RawResponse) -> (String, String) {
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)));
    (
        v["errors"][0]["code"].as_str().unwrap_or_default().into(),
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .into(),
    )
}

/// Where to PUT the bytes of `digest` to finish the upload session at
/// `location` (a URL or a path).
fn upload_path(location: &str, digest: &str) -> String {
    let path = &location[location.find("/v2/").expect("/v2/ in Location")..];
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}digest={digest}")
}

/// Uploads `bytes` into `repo` at `target` (a registry or a front) with
/// `auth`; returns the digest.
fn put_blob_at(target: &str, auth: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let h = [("Authorization", auth)];
    let r = http_request(
        target,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &h,
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("Location");
    let octets = [
        ("Authorization", auth),
        ("Content-Type", "application/octet-stream"),
    ];
    let r = http_request(
        target,
        "PUT",
        &upload_path(location, &digest),
        &octets,
        bytes,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    digest
}

/// Uploads `bytes` into `repo` straight at the registry; returns the digest.
fn put_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> String {
    put_blob_at(&reg.target(), &reg.auth_header(), repo, bytes)
}

/// An OCI image manifest whose blobs `repo` at `target` holds, with `extra`
/// fields merged in (or replacing the defaults).
fn manifest_at(target: &str, auth: &str, repo: &str, extra: Value) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = format!("layer of {repo}").into_bytes();
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": put_blob_at(target, auth, repo, config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": put_blob_at(target, auth, repo, &layer), "size": layer.len()}],
    });
    for (k, v) in extra.as_object().expect("extra is an object") {
        doc[k] = v.clone();
    }
    serde_json::to_vec(&doc).unwrap()
}

/// [`manifest_at`] the registry itself.
fn manifest(reg: &Registry, repo: &str, extra: Value) -> Vec<u8> {
    manifest_at(&reg.target(), &reg.auth_header(), repo, extra)
}

fn manifest_puts(reqs: &[RequestRecord]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/"))
        .count()
}
