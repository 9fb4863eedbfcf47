//! The rig's servers over HTTPS, driven with raw HTTP and skopeo: a TLS
//! registry, a TLS fault proxy in front of a TLS or plain registry, and the
//! HTTPS blob host behind a registry's redirects.

use crate::*;

fn push_small(reg: &Registry, repo_tag: &str) -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_layout(
        dir.path(),
        "v1",
        &ImageSpec::single(&[20_000, 3_000]).with_seed(5),
    );
    skopeo_push(&layout, reg, repo_tag);
    (dir, layout)
}

#[test]
fn given_a_tls_registry_when_pushed_to_with_skopeo_and_read_raw_then_both_verify_the_rig_ca() {
    let reg = Registry::start_tls("111111111111");
    assert_eq!(reg.url(), format!("https://{}", reg.host()));
    assert_eq!(skopeo_tls_args(&reg, "dest")[0], "--dest-cert-dir");

    let (_dir, layout) = push_small(&reg, "app:v1");

    let ping = reg.http("GET", "/v2/", &[], b"");
    assert_eq!(ping.status, 200);
    let r = reg.http(
        "GET",
        "/v2/app/manifests/v1",
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    assert!(r.status == 200 && r.body == layout.manifest_bytes());
    let puts = reg.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, layout.blobs.len() + 1, "blobs and the manifest");
    // Plain HTTP to a TLS port gets distribution's 400, not an answer.
    let plain = http_request(&reg.host(), "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(plain.status, 400);
}

#[test]
fn given_a_tls_front_when_requests_pass_it_then_upload_locations_carry_https_whether_the_registry_is_tls_or_not(
) {
    for upstream in [
        Registry::start_tls("222222222222"),
        Registry::start("222222222222"),
    ] {
        let front = FaultProxy::start(
            &upstream,
            ProxyOptions {
                tls: Some(ServerCert::Rig),
                ..ProxyOptions::ecr()
            },
        );
        front.create_repository("app", false);
        assert_eq!(front.target(), front.url());
        assert!(front.url().starts_with("https://"));
        let start_upload = |front: &FaultProxy| {
            upstream.http_at(&front.target(), "POST", "/v2/app/blobs/uploads/", &[], b"")
        };
        let r = start_upload(&front);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let location = r.header("location").unwrap();
        assert!(
            location.starts_with(&format!("{}/v2/app/blobs/uploads/", front.url())),
            "upstream {}: {location}",
            upstream.url()
        );
        // And a front without TLS before a TLS registry says http.
        let plain_front = FaultProxy::start(&upstream, ProxyOptions::default());
        let r = start_upload(&plain_front);
        let location = r.header("location").unwrap();
        assert!(
            location.starts_with(&format!("http://{}/", plain_front.host())),
            "{location}"
        );
    }
}

#[test]
fn given_a_tls_registry_redirecting_blobs_when_a_blob_is_fetched_then_it_comes_from_the_https_blob_host(
) {
    let reg = Registry::start_with(RegistryOptions {
        redirect_blobs: true,
        ..RegistryOptions::new("111111111111").with_tls()
    });
    let (_dir, layout) = push_small(&reg, "app:v1");
    let s3 = reg.blob_host().expect("blob host");
    assert!(s3.url().starts_with("https://127.0.0.1:"));
    let (digest, size) = layout.blobs.last().unwrap().clone();

    let r = reg.http("GET", &format!("/v2/app/blobs/{digest}"), &[], b"");
    assert_eq!(r.status, 307);
    let location = r.header("location").unwrap().to_string();
    let path = location.strip_prefix(&s3.url()).expect("on the blob host");
    let blob = http_request(&s3.target(), "GET", path, &[], b"").unwrap();

    assert_eq!(blob.status, 200);
    assert_eq!(
        (blob.body.len() as u64, sha256_digest(&blob.body)),
        (size, digest)
    );
    assert!(s3.requests().iter().all(|r| !r.had_authorization));
}
