//! End-to-end check of the rig itself against the real tools. Ignored by
//! default because it needs docker-registry and skopeo; run with
//! `cargo test -p ecr-bridge-tests --lib`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::*;

fn summary(reqs: &[RequestRecord]) -> BTreeMap<(String, u16), usize> {
    let mut m = BTreeMap::new();
    for r in reqs {
        *m.entry((r.method.clone(), r.status)).or_insert(0) += 1;
    }
    m
}

#[test]
fn push_copy_and_compare_every_kind_of_image() {
    let t = Instant::now();
    let src = Registry::start("111111111111");
    let dst = Registry::start("222222222222");
    eprintln!("two registries started in {:?}", t.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let plats =
        ["linux/amd64", "linux/arm64/v8", "linux/s390x"].map(|p| Platform::parse(p).unwrap());
    let images = [
        ("single:v1", ImageSpec::single(&[1 << 20, 2 << 20])),
        (
            "docker:v1",
            ImageSpec::single(&[1 << 20, 300 << 10])
                .docker()
                .with_seed(2),
        ),
        (
            "multi:v1",
            ImageSpec::multi_arch(&plats, &[1 << 20, 512 << 10], 1).with_seed(3),
        ),
        (
            "dockermulti:v1",
            ImageSpec::multi_arch(&plats[..2], &[100 << 10, 200 << 10], 1)
                .docker()
                .with_seed(4),
        ),
        ("sbom:v1", ImageSpec::artifact()),
    ];
    for (name, spec) in &images {
        let tag = name.split(':').nth(1).unwrap();
        let repo = repo_of(name);
        let layout = build_layout(&dir.path().join(repo), tag, spec);
        let t = Instant::now();
        skopeo_push(&layout, &src, name);
        eprintln!("pushed {name} ({}) in {:?}", layout.media_type, t.elapsed());
        assert_eq!(skopeo_digest(&src, name).unwrap(), layout.digest);
        // The registry serves it with the layout's media type.
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        let path = format!("/v2/{repo}/manifests/{tag}");
        let r = src.http("GET", &path, &[("Accept", &accept)], b"");
        assert_eq!(r.header("content-type"), Some(layout.media_type.as_str()));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(layout.digest.as_str())
        );

        let mark = dst.request_mark();
        let dst_ref = format!("mirror/{name}");
        skopeo_copy(&src, name, &dst, &dst_ref).unwrap();
        assert_same_image(&src, name, &dst, &dst_ref);
        let reqs = dst.requests_since(mark);
        eprintln!("copy of {name} sent to dst: {:?}", summary(&reqs));
        // One manifest PUT per manifest, one blob upload (POST + PUT) per blob.
        let puts = reqs
            .iter()
            .filter(|r| r.method == "PUT" && r.status == 201)
            .count();
        assert_eq!(
            puts,
            layout.manifests.len() + layout.blobs.len(),
            "{reqs:#?}"
        );
        assert!(reqs.iter().any(|r| r.method == "POST" && r.status == 202));
        assert!(reqs.iter().any(|r| r.method == "HEAD"));
    }

    // Failures are logged too: 404 from a handler, 401 from the auth layer.
    let mark = dst.request_mark();
    assert_eq!(
        dst.http("GET", "/v2/mirror/single/manifests/nope", &[], b"")
            .status,
        404
    );
    assert_eq!(
        dst.http(
            "HEAD",
            &format!("/v2/mirror/single/blobs/sha256:{}", "0".repeat(64)),
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        http_request(&dst.host(), "GET", "/v2/_catalog", &[], b"")
            .unwrap()
            .status,
        401
    );
    let got: Vec<_> = dst
        .requests_since(mark)
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        got,
        [
            ("GET".to_string(), 404),
            ("HEAD".to_string(), 404),
            ("GET".to_string(), 401)
        ]
    );

    // A copy that fails on auth shows up as 401s only.
    let bad = Registry::start("333333333333");
    let mark = bad.request_mark();
    let err = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "AWS:wrong",
        &format!("oci:{}:v1", dir.path().join("single").display()),
        &format!("docker://{}/x:v1", bad.host()),
    ])
    .unwrap_err();
    eprintln!("bad creds: {}", err.lines().last().unwrap_or_default());
    let reqs = bad.requests_since(mark);
    assert!(
        !reqs.is_empty() && reqs.iter().all(|r| r.status == 401),
        "{reqs:#?}"
    );
}

#[test]
fn anonymous_registry_and_timings() {
    let t = Instant::now();
    let reg = Registry::start_anonymous();
    eprintln!("anonymous registry started in {:?}", t.elapsed());
    assert_eq!(
        http_request(&reg.host(), "GET", "/v2/", &[], b"")
            .unwrap()
            .status,
        200
    );
    // The readiness probes are left out; our request is there.
    assert_eq!(
        reg.requests(),
        [RequestRecord {
            method: "GET".into(),
            uri: "/v2/".into(),
            status: 200
        }]
    );

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let l = build_layout(
        dir.path(),
        "big",
        &ImageSpec::single(&[1 << 20, 50 << 20, 300 << 20]),
    );
    eprintln!(
        "352 MB image ({} bytes) built in {:?}",
        l.total_blob_bytes,
        t.elapsed()
    );
}

#[test]
fn request_log_never_lags() {
    // The "response completed" line is written after the response: without
    // the barrier in requests() this loop would see 0 records now and then.
    for reg in [Registry::start("444444444444"), Registry::start_anonymous()] {
        for i in 0..100 {
            let mark = reg.request_mark();
            let path = format!("/v2/r/blobs/sha256:{:064x}", i);
            assert_eq!(reg.http("HEAD", &path, &[], b"").status, 404);
            let got = reg.requests_since(mark);
            assert_eq!(
                got,
                [RequestRecord {
                    method: "HEAD".into(),
                    uri: path,
                    status: 404
                }]
            );
        }
    }
}

fn panic_text(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .expect_err("should have panicked");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn oracle_catches_differences() {
    let (a, b) = (
        Registry::start("555555555555"),
        Registry::start("666666666666"),
    );
    let dir = tempfile::tempdir().unwrap();
    let one = build_layout(dir.path(), "one", &ImageSpec::single(&[10_000, 20_000]));
    let two = build_layout(
        dir.path(),
        "two",
        &ImageSpec::single(&[10_000, 20_000]).with_seed(7),
    );
    skopeo_push(&one, &a, "x:v1");
    skopeo_push(&two, &b, "x:v1");
    assert!(panic_text(|| assert_same_image(&a, "x:v1", &b, "x:v1")).contains("manifest differs"));
    assert!(panic_text(|| assert_same_image(&a, "x:v1", &b, "nothing:v1")).contains("missing"));

    skopeo_push(&one, &b, "y:v1");
    assert_same_image(&a, "x:v1", &b, "y:v1");
    let layer = &one.blobs[1].0;
    assert_eq!(
        b.http("DELETE", &format!("/v2/y/blobs/{layer}"), &[], b"")
            .status,
        202
    );
    let text = panic_text(|| assert_same_image(&a, "x:v1", &b, "y:v1"));
    assert!(text.contains(layer) && text.contains("missing"), "{text}");
}

#[test]
fn registry_outlives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG is per thread: a registry started from a short-lived
    // thread must not die with that thread.
    let mut reg = std::thread::spawn(|| Registry::start("777777777777"))
        .join()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        reg.exited().is_none(),
        "registry died with its starting thread"
    );
    assert_eq!(reg.http("GET", "/v2/", &[], b"").status, 200);
}
