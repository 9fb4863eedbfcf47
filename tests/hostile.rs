//! A hostile or broken source against the copy engine (issue 13, points 7 to
//! 9): an index that lists one child 20,000 times or more manifests than a
//! copy takes, a presigned blob URL whose host fails before answering, and
//! registries that send the client off TLS or onto plain HTTP it did not
//! allow. Real docker-registries where they accept the content; scripted
//! hosts ([`rig::BlobHost::scripted`]) for what no real registry does on cue.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use ecr_bridge::copy::{CopyError, Limit, DEFAULT_MAX_MANIFESTS};
use ecr_bridge::registry::{
    self, Endpoint, RegistryClient, RegistryError, Repository, StaticCredentials, Timeouts,
};
use rig::{sha256_digest, trust_rig_ca, BlobHost, ImageSpec, Registry, ServerCert};
use serde_json::{json, Value};

const SRC_ACCOUNT: &str = "111111111111";
const DST_ACCOUNT: &str = "222222222222";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What a presigned S3 URL carries in its query, as ECR's redirects do.
const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token=SECRET-SESSION-TOKEN&X-Amz-Signature=0123456789abcdef";

/// The pushed image's manifest: its JSON, size and media type.
fn manifest_of(image: &Pushed) -> (Value, u64, String) {
    let path = image.layout.blob_path(&image.layout.digest);
    let bytes = std::fs::read(&path).expect("manifest in the layout");
    let json = serde_json::from_slice(&bytes).expect("manifest JSON");
    (json, bytes.len() as u64, image.layout.media_type.clone())
}

/// An OCI index listing `children` ((digest, size, media type)) in order.
fn index_of(children: &[(String, u64, String)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(digest, size, media_type)| {
            json!({"mediaType": media_type, "digest": digest, "size": size,
                   "platform": {"architecture": "amd64", "os": "linux"}})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
        .unwrap()
}

fn put_manifest(reg: &Registry, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let resp = reg.http("PUT", &path, &[("Content-Type", media_type)], body);
    assert_eq!(
        resp.status,
        201,
        "PUT {path} ({} bytes): {}",
        body.len(),
        String::from_utf8_lossy(&resp.body)
    );
}

fn count(records: &[rig::RequestRecord], method: &str, uri_prefix: &str) -> usize {
    records
        .iter()
        .filter(|r| r.method == method && r.uri.starts_with(uri_prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_index_listing_one_child_20000_times_when_copied_then_the_child_is_read_and_pushed_once(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let child = push_image(&src, &ImageSpec::single(&[4096]), "app", "child");
    let (_, size, media_type) = manifest_of(&child);
    let index = index_of(&vec![
        (child.layout.digest.clone(), size, media_type);
        20_000
    ]);
    // docker-registry takes the index as is (2.9 MB, under ECR's 4 MiB
    // PutImage limit), so the real registry serves it rather than a script.
    assert!(
        index.len() > 2_500_000 && index.len() < 4 << 20,
        "{}",
        index.len()
    );
    put_manifest(&src, "app", "hostile", OCI_INDEX, &index);
    let (src_mark, dst_mark) = (src.request_mark(), dst.request_mark());

    let report = copy(
        &at(&src, "app"),
        &tag("hostile"),
        &at(&dst, "mirror"),
        &["hostile"],
    )
    .await
    .unwrap();

    assert_eq!(report.digest.to_string(), sha256_digest(&index));
    assert_eq!(
        report.manifests_copied, 2,
        "the child once, then the index: {report:?}"
    );
    assert_eq!(
        report.blobs_uploaded, 2,
        "config and layer once: {report:?}"
    );
    // Bounded work, hence bounded memory: every request about the child
    // was made once, however often the index lists it.
    let child_path = format!("/v2/app/manifests/{}", child.layout.digest);
    let (src_seen, dst_seen) = (src.requests_since(src_mark), dst.requests_since(dst_mark));
    assert_eq!(count(&src_seen, "GET", &child_path), 1, "{src_seen:?}");
    let dst_child = format!("/v2/mirror/manifests/{}", child.layout.digest);
    assert_eq!(count(&dst_seen, "HEAD", &dst_child), 1);
    assert_eq!(count(&dst_seen, "PUT", "/v2/mirror/manifests/"), 2);
    assert_eq!(blob_puts(&dst_seen), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_index_of_more_distinct_manifests_than_the_default_cap_when_copied_then_refused_permanently_naming_the_cap_before_any_child_is_read(
) {
    // Served by a script: docker-registry takes an index only once it holds
    // every child, and 1,001 manifest PUTs cost it ~10 s; the copy must
    // refuse before reading any child, so they need not exist.
    let children: Vec<(String, u64, String)> = (0..=DEFAULT_MAX_MANIFESTS)
        .map(|n| {
            (
                sha256_digest(n.to_string().as_bytes()),
                500,
                OCI_MANIFEST.to_string(),
            )
        })
        .collect();
    let index = index_of(&children);
    let index_digest = sha256_digest(&index);
    let src = BlobHost::scripted(None, move |method, target| {
        if target == "/v2/app/manifests/too-many"
            || target == format!("/v2/app/manifests/{index_digest}")
        {
            raw(
                method,
                "200 OK",
                &[
                    ("Content-Type", OCI_INDEX),
                    ("Docker-Content-Digest", &index_digest),
                ],
                &index,
            )
        } else {
            raw(method, "404 Not Found", &[], b"")
        }
    });
    let dst = Registry::start(DST_ACCOUNT);
    let dst_mark = dst.request_mark();

    let err = copy(
        &Repository::new(anonymous(&src.url()), "app"),
        &tag("too-many"),
        &at(&dst, "mirror"),
        &["too-many"],
    )
    .await
    .unwrap_err();

    assert!(
        matches!(err, CopyError::LimitExceeded { limit: Limit::Manifests, max, .. } if max == DEFAULT_MAX_MANIFESTS as u64),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&format!("limit max_manifests = {DEFAULT_MAX_MANIFESTS}")),
        "{text}"
    );
    let read: Vec<_> = src
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(read.len(), 1, "the index only: {read:?}");
    let dst_seen = dst.requests_since(dst_mark);
    assert_eq!(
        count(&dst_seen, "PUT", "/v2/"),
        0,
        "nothing written: {dst_seen:?}"
    );
    assert_eq!(
        count(&dst_seen, "HEAD", "/v2/mirror/manifests/sha256:"),
        1,
        "the index's own check"
    );
}

/// A raw HTTP/1.1 answer; a HEAD gets the headers alone.
fn raw(method: &str, status: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Vec<u8>> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = if method == "HEAD" { &[][..] } else { body };
    Some([head.as_bytes(), body].concat())
}

/// A registry serving `app:v1`, one config and one layer, whose layer GETs
/// are redirected to `layer_url`, as ECR sends them to S3.
fn redirecting_source(tls: Option<ServerCert>, layer_url: String) -> BlobHost {
    let (config, layer) = (
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        b"layer".to_vec(),
    );
    let (config_digest, layer_digest) = (sha256_digest(&config), sha256_digest(&layer));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = sha256_digest(&manifest);
    BlobHost::scripted(tls, move |method, target| {
        let path = target.split('?').next().unwrap_or_default();
        if path == "/v2/app/manifests/v1" || path == format!("/v2/app/manifests/{manifest_digest}")
        {
            raw(
                method,
                "200 OK",
                &[
                    ("Content-Type", OCI_MANIFEST),
                    ("Docker-Content-Digest", &manifest_digest),
                ],
                &manifest,
            )
        } else if path == format!("/v2/app/blobs/{config_digest}") {
            raw(method, "200 OK", &[], &config)
        } else if path == format!("/v2/app/blobs/{layer_digest}") {
            raw(
                method,
                "307 Temporary Redirect",
                &[("Location", &layer_url)],
                b"",
            )
        } else {
            raw(method, "404 Not Found", &[], b"")
        }
    })
}

/// `rig::BlobHost` answers; an S3 that hangs up on every request.
fn hanging_up_s3() -> BlobHost {
    BlobHost::scripted(None, |_, _| None)
}

fn anonymous(url: &str) -> RegistryClient {
    client_via(url, Arc::new(StaticCredentials(None)), fast_retry())
}

/// `err`, its `Debug` and every cause in its chain, as one text.
fn everything_said(err: &dyn std::error::Error) -> String {
    let mut all = format!("{err} {err:?}");
    let mut cause = err.source();
    while let Some(c) = cause {
        all.push_str(&format!(" {c} {c:?}"));
        cause = c.source();
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_presigned_blob_url_whose_host_hangs_up_when_copied_then_neither_the_error_nor_any_log_line_shows_its_query(
) {
    let logs = capture_all_logs();
    let s3 = hanging_up_s3();
    let src = redirecting_source(None, format!("{}/bucket/layer?{PRESIGNED_QUERY}", s3.url()));
    let dst = Registry::start(DST_ACCOUNT);

    let err = copy(
        &Repository::new(anonymous(&src.url()), "app"),
        &tag("v1"),
        &at(&dst, "mirror"),
        &["v1"],
    )
    .await
    .unwrap_err();

    assert!(
        err.is_retryable(),
        "a host that hangs up may answer later: {err:?}"
    );
    let said = everything_said(&err);
    assert!(
        !said.contains("X-Amz-") && !said.contains("SECRET"),
        "{said}"
    );
    assert!(said.contains("/bucket/layer"), "host and path stay: {said}");
    let logged = logs.text();
    assert!(
        logged.contains("blob copy failed; retrying"),
        "the WARN line is there: {logged}"
    );
    assert!(
        !logged.contains("X-Amz-") && !logged.contains("SECRET"),
        "{logged}"
    );
    let asked = s3.requests();
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|r| r.query.contains("X-Amz-Signature=") && r.status == 0),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_presigned_blob_url_whose_host_hangs_up_when_the_cli_copies_then_stderr_and_stdout_never_show_its_query(
) {
    let s3 = hanging_up_s3();
    let src = redirecting_source(None, format!("{}/bucket/layer?{PRESIGNED_QUERY}", s3.url()));
    let dst = Registry::start(DST_ACCOUNT);

    let out = Command::new(cli_binary())
        .args([
            "copy",
            &format!("{}/app:v1", src.host()),
            &format!("{}/mirror", dst.host()),
            "--plain-http-loopback",
            "--attempts",
            "2",
            "--dest-creds-env",
            "DST_CREDS",
        ])
        .env("DST_CREDS", dst.creds())
        .env("ECR_BRIDGE_LOG", "trace")
        .output()
        .expect("running ecr-bridge");

    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(75), "transient: {stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("/bucket/layer"),
        "the failure is reported: {stderr}"
    );
    assert!(stderr.contains("error:"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("X-Amz-") && !text.contains("SECRET"),
            "{text}"
        );
    }
    assert!(!s3.requests().is_empty(), "the presigned URL was tried");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_https_target_whose_upload_location_is_plain_http_when_copied_then_refused_permanently_and_nothing_is_sent_there(
) {
    trust_rig_ca();
    let src = Registry::start(SRC_ACCOUNT);
    push_image(&src, &ImageSpec::single(&[4096]), "app", "v1");
    let plain = BlobHost::scripted(None, |method, _| raw(method, "201 Created", &[], b""));
    let location = format!("{}/v2/mirror/blobs/uploads/u1?_state=opaque", plain.url());
    let dst = BlobHost::scripted(Some(ServerCert::Rig), move |method, target| match method {
        "POST" if target.starts_with("/v2/mirror/blobs/uploads/") => {
            raw(method, "202 Accepted", &[("Location", &location)], b"")
        }
        _ => raw(method, "404 Not Found", &[], b""),
    });
    // With plain HTTP to loopback allowed, the strictest case: the Location
    // is refused because it leaves TLS, not for lack of the opt-in.
    let target = Repository::new(anonymous(&dst.url()), "mirror");
    assert!(!target.client().endpoint().is_plain_http());

    let err = copy(&at(&src, "app"), &tag("v1"), &target, &["v1"])
        .await
        .unwrap_err();

    assert_refused_permanently(&err, "upload Location");
    assert!(
        err.to_string()
            .contains("leaves an HTTPS registry for plain HTTP"),
        "{err}"
    );
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    assert!(
        dst.requests().iter().all(|r| r.method != "PUT"),
        "{:?}",
        dst.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_https_source_redirecting_a_blob_to_plain_http_loopback_without_the_opt_in_when_copied_then_refused_permanently_and_nothing_is_asked_there(
) {
    trust_rig_ca();
    let s3 = hanging_up_s3();
    let src = redirecting_source(
        Some(ServerCert::Rig),
        format!("{}/bucket/layer?{PRESIGNED_QUERY}", s3.url()),
    );
    let dst = Registry::start(DST_ACCOUNT);
    let timeouts = Timeouts::default();
    // `127.0.0.1:PORT` without --plain-http-loopback: HTTPS, and no plain HTTP anywhere.
    let source = RegistryClient::new(
        registry::http_client(&timeouts).unwrap(),
        Endpoint::parse(&src.host(), false).unwrap(),
        Arc::new(StaticCredentials(None)),
        fast_retry(),
        timeouts,
    );

    let err = copy(
        &Repository::new(source, "app"),
        &tag("v1"),
        &at(&dst, "mirror"),
        &["v1"],
    )
    .await
    .unwrap_err();

    assert_refused_permanently(&err, "redirect");
    let text = err.to_string();
    assert!(
        text.contains("not explicitly allowed (--plain-http-loopback)"),
        "{text}"
    );
    assert!(!everything_said(&err).contains("X-Amz-"), "{err:?}");
    assert!(s3.requests().is_empty(), "{:?}", s3.requests());
}

/// The copy stopped at a redirect or upload `Location` it must not follow,
/// for good (a retry would be sent to the same place).
fn assert_refused_permanently(err: &CopyError, what: &str) {
    assert!(
        matches!(
            err,
            CopyError::Registry(RegistryError::UnsafeLocation { what: w, .. }) if *w == what
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}
