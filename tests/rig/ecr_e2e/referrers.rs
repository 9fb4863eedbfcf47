//! Referrer refusals: 405 `UNSUPPORTED` for parameterised media types and
//! for manifests with a `subject`, each its own option.

use super::*;

/// A front for `reg` refusing media types with parameters, referrers, or both.
fn refusing(reg: &Registry, media_type_parameters: bool, referrers: bool) -> FaultProxy {
    front(
        reg,
        ProxyOptions {
            refuse_media_type_parameters: media_type_parameters,
            refuse_referrers: referrers,
            ..ProxyOptions::default()
        },
    )
}

#[test]
fn given_referrer_refusals_when_manifests_with_parameterised_media_types_or_a_subject_are_put_then_ecr_405_unsupported_and_nothing_reaches_the_registry(
) {
    let reg = Registry::start(ACCOUNT);
    let proxy = refusing(&reg, true, true);
    let bundle = "application/vnd.dev.sigstore.bundle+json;version=0.2";
    let plain = manifest(&reg, "app", json!({}));
    let put = |tag: &str, content_type: &str, body: &[u8]| {
        put_manifest(
            &proxy,
            &reg,
            &format!("/v2/app/manifests/{tag}"),
            content_type,
            body,
        )
    };
    let r = put("plain", OCI_MANIFEST, &plain);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let subject_digest = sha256_digest(&plain);
    let mark = reg.request_mark();

    let layer = put_blob(&reg, "app", b"bundle");
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "content-type",
            format!("{OCI_MANIFEST}; charset=utf-8"),
            plain.clone(),
            "charset=utf-8",
        ),
        (
            "artifact-type",
            OCI_MANIFEST.to_string(),
            manifest(&reg, "app", json!({"artifactType": bundle})),
            bundle,
        ),
        (
            "layer-type",
            OCI_MANIFEST.to_string(),
            manifest(
                &reg,
                "app",
                json!({"layers": [{"mediaType": bundle, "digest": layer, "size": 6}]}),
            ),
            bundle,
        ),
        (
            "referrer",
            OCI_MANIFEST.to_string(),
            manifest(
                &reg,
                "app",
                json!({"artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                       "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": plain.len()}}),
            ),
            "subject",
        ),
    ];
    for (tag, content_type, body, named) in &cases {
        let r = put(tag, content_type, body);
        assert_eq!(r.status, 405, "{tag}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let (code, message) = error_of(&r);
        assert_eq!(code, "UNSUPPORTED", "{tag}");
        assert!(message.contains(named), "{tag}: {message}");
        let held = reg.http(
            "HEAD",
            &format!("/v2/app/manifests/{tag}"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        );
        assert_eq!(held.status, 404, "{tag} reached the registry");
    }
    assert_eq!(manifest_puts(&reg.requests_since(mark)), 0);
    let stats = proxy.stats();
    assert_eq!(stats.referrers_refused, 4);
    assert_eq!(stats.manifest_puts_forwarded, 1);

    // Each refusal is its own option: without the referrer one a subject
    // passes, without the media-type one parameters pass.
    let only_params = refusing(&reg, true, false);
    let only_referrers = refusing(&reg, false, true);
    for (front, (tag, _, body, _)) in [(&only_params, &cases[3]), (&only_referrers, &cases[1])] {
        let path = format!("/v2/app/manifests/{tag}");
        let r = put_manifest(front, &reg, &path, OCI_MANIFEST, body);
        assert_eq!(r.status, 201, "{tag}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(
        only_params.stats().referrers_refused + only_referrers.stats().referrers_refused,
        0
    );
}
