//! Create on push: creation templates by namespace, with listed and with
//! moto's repositories.

use super::*;

/// An ECR front for `reg` with creation templates for these prefixes.
fn templates(reg: &Registry, prefixes: &[&str]) -> FaultProxy {
    front(
        reg,
        ProxyOptions {
            create_on_push: prefixes.iter().map(|p| p.to_string()).collect(),
            ..ProxyOptions::ecr()
        },
    )
}

#[test]
fn given_create_on_push_for_a_namespace_when_a_missing_repository_is_pushed_to_then_it_is_created_and_reads_still_get_name_unknown(
) {
    let reg = Registry::start(ACCOUNT);
    let proxy = templates(&reg, &["prod"]);
    let name_unknown = |r: &RawResponse, what: &str| {
        assert_eq!(r.status, 404, "{what}");
        if !r.body.is_empty() {
            assert_eq!(error_of(r).0, "NAME_UNKNOWN", "{what}");
        }
    };
    // Reads of a missing repository: NAME_UNKNOWN, nothing created; outside
    // the namespace a push is refused as before.
    let blob = format!("/v2/prod/app/blobs/sha256:{}", "0".repeat(64));
    for (method, path, what) in [
        ("GET", "/v2/prod/app/manifests/v1", "manifest GET"),
        ("HEAD", "/v2/prod/app/manifests/v1", "manifest HEAD"),
        ("HEAD", blob.as_str(), "blob HEAD"),
        ("GET", "/v2/prod/app/tags/list", "tags"),
        (
            "POST",
            "/v2/production/app/blobs/uploads/",
            "other namespace",
        ),
        ("POST", "/v2/prod/blobs/uploads/", "the prefix itself"),
    ] {
        name_unknown(&send(&proxy, &reg, method, path), what);
    }
    assert_eq!(proxy.stats().created_on_push, 0);
    assert_eq!(proxy.stats().forwarded, 0);

    // The first upload POST creates it and goes on; the next finds it.
    let post = || send(&proxy, &reg, "POST", "/v2/prod/app/blobs/uploads/");
    let r = post();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(proxy.stats().created_on_push, 1);
    assert_eq!(post().status, 202);
    assert_eq!(proxy.stats().created_on_push, 1);
    // Reads now reach the registry.
    let (unknown_before, forwarded_before) = (proxy.stats().name_unknown, proxy.stats().forwarded);
    send(&proxy, &reg, "GET", "/v2/prod/app/tags/list");
    assert_eq!(proxy.stats().name_unknown, unknown_before);
    assert_eq!(proxy.stats().forwarded, forwarded_before + 1);

    // A manifest PUT creates one too (its blobs put straight at the registry).
    let body = manifest(&reg, "prod/team/svc", json!({}));
    let put = || {
        put_manifest(
            &proxy,
            &reg,
            "/v2/prod/team/svc/manifests/v1",
            OCI_MANIFEST,
            &body,
        )
    };
    let r = put();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(proxy.stats().created_on_push, 2);
    // Mutable: the tag can be put again.
    assert_eq!(put().status, 201);

    // ROOT ("" too) covers every name.
    let root = templates(&reg, &["ROOT"]);
    name_unknown(
        &send(&root, &reg, "GET", "/v2/anything/manifests/v1"),
        "ROOT read",
    );
    assert_eq!(
        send(&root, &reg, "POST", "/v2/anything/blobs/uploads/").status,
        202
    );
    assert_eq!(root.stats().created_on_push, 1);
}

#[test]
fn given_create_on_push_with_moto_repositories_when_a_push_arrives_then_moto_gets_the_repository_mutable(
) {
    let moto = Moto::start();
    let reg = Registry::start(ACCOUNT);
    let region = "eu-central-1";
    let proxy = front(
        &reg,
        ProxyOptions {
            repositories: Repositories::Moto {
                url: moto.url(),
                account: ACCOUNT.into(),
                region: region.into(),
            },
            create_on_push: vec![String::new()],
            ..ProxyOptions::ecr()
        },
    );
    let r = send(&proxy, &reg, "GET", "/v2/team/app/manifests/v1");
    assert_eq!((r.status, error_of(&r).0.as_str()), (404, "NAME_UNKNOWN"));
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, region, "team/app"),
        None
    );

    let post = || send(&proxy, &reg, "POST", "/v2/team/app/blobs/uploads/");
    let r = post();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        moto_repository(&moto.url(), ACCOUNT, region, "team/app"),
        Some(false)
    );
    assert_eq!(post().status, 202);
    assert_eq!(proxy.stats().created_on_push, 1);
    // Only in that account and region.
    assert_eq!(
        moto_repository(&moto.url(), "333333333333", region, "team/app"),
        None
    );
    assert!(!moto_create_repository(
        &moto.url(),
        ACCOUNT,
        region,
        "team/app"
    ));
}
