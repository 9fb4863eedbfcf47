//! Tags of 129–300 characters through an ECR front: aliased upstream, read
//! back under the long name, over 300 refused.

use super::*;

#[test]
fn given_an_ecr_front_with_long_tags_when_a_manifest_is_put_under_a_300_character_tag_then_it_reads_back_identical_and_the_tag_list_shows_the_long_name(
) {
    let reg = Registry::start(ACCOUNT);
    let ecr = front(&reg, ProxyOptions::ecr());
    ecr.create_repository("team/app", false);
    let auth = reg.auth_header();
    // Its blobs go in through the front.
    let manifest = manifest_at(&ecr.host(), &auth, "team/app", json!({}));
    let tag = format!("release-{}", "x".repeat(292));
    assert_eq!(tag.len(), 300);
    let path = format!("/v2/team/app/manifests/{tag}");
    let ct = [
        ("Authorization", auth.as_str()),
        ("Content-Type", OCI_MANIFEST),
    ];

    let put = http_request(&ecr.host(), "PUT", &path, &ct, &manifest).unwrap();
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let accept = [("Authorization", auth.as_str()), ("Accept", OCI_MANIFEST)];
    let got = http_request(&ecr.host(), "GET", &path, &accept, b"").unwrap();
    let head = http_request(&ecr.host(), "HEAD", &path, &accept, b"").unwrap();
    let list = http_request(
        &ecr.host(),
        "GET",
        "/v2/team/app/tags/list",
        &accept[..1],
        b"",
    )
    .unwrap();

    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(got.body == manifest, "GET gave other bytes");
    assert_eq!(
        (head.status, head.header("docker-content-digest")),
        (200, Some(sha256_digest(&manifest).as_str()))
    );
    let tags: Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(tags["tags"], json!([tag]), "{tags}");
    // Upstream, the registry holds the alias.
    let upstream = reg.http(
        "GET",
        &format!("/v2/team/app/manifests/{}", long_tag_alias(&tag)),
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    assert!(upstream.status == 200 && upstream.body == manifest);
    // Over 300: ECR's TAG_INVALID, never forwarded.
    let forwarded = ecr.stats().forwarded;
    let long = http_request(
        &ecr.host(),
        "PUT",
        &format!("/v2/team/app/manifests/{tag}y"),
        &ct,
        &manifest,
    )
    .unwrap();
    let code: Value = serde_json::from_slice(&long.body).unwrap();
    assert_eq!(
        (long.status, code["errors"][0]["code"].as_str()),
        (400, Some("TAG_INVALID"))
    );
    assert_eq!(ecr.stats().forwarded, forwarded);
    // Off by default: the registry's own answer to a tag it cannot take.
    let plain = front(&reg, ProxyOptions::default());
    let r = http_request(&plain.host(), "GET", &path, &accept, b"").unwrap();
    assert_eq!(r.status, 404);
}
