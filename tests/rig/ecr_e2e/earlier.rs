//! The behaviours that came first (PATCH 201, `NAME_UNKNOWN`, immutable
//! tags, count-based token rotation), driven raw.

use std::time::SystemTime;

use super::*;

#[test]
fn given_the_earlier_ecr_options_when_driven_raw_then_they_answer_as_before_the_new_behaviours_were_added(
) {
    let reg = Registry::start(ACCOUNT);
    let ecr = front(&reg, ProxyOptions::ecr());
    ecr.create_repository("frozen", true);

    // PATCH: 201, not forwarded. Unlisted repository: NAME_UNKNOWN.
    let r = reg.http_at(
        &ecr.host(),
        "PATCH",
        "/v2/frozen/blobs/uploads/some-session",
        &[],
        b"part",
    );
    assert_eq!((r.status, ecr.stats().forwarded), (201, 0));
    let r = send(&ecr, &reg, "POST", "/v2/missing/blobs/uploads/");
    assert_eq!((r.status, error_of(&r).0.as_str()), (404, "NAME_UNKNOWN"));

    // Immutable: a new tag goes in, the same tag again gets TAG_INVALID,
    // a digest PUT passes.
    let body = manifest(&reg, "frozen", json!({}));
    let put = |reference: &str| {
        put_manifest(
            &ecr,
            &reg,
            &format!("/v2/frozen/manifests/{reference}"),
            OCI_MANIFEST,
            &body,
        )
    };
    assert_eq!(put("v1").status, 201);
    let r = put("v1");
    assert_eq!((r.status, error_of(&r).0.as_str()), (400, "TAG_INVALID"));
    assert_eq!(put(&sha256_digest(&body)).status, 201);
    let stats = ecr.stats();
    assert_eq!(
        (stats.tag_refusals, stats.name_unknown, stats.patches),
        (1, 1, 1)
    );
    assert_eq!(stats.manifest_puts_forwarded, 2);

    // Count-based rotation: 401 for the replaced token, counted as stale;
    // expire_now replaces the current token in this mode.
    let rotating = front(
        &reg,
        ProxyOptions {
            tokens: Some(TokenRotation::EveryRequests(2)),
            ..ProxyOptions::default()
        },
    );
    let handle = rotating.tokens();
    let ping = |(user, password): &(String, String)| ping(&rotating, user, password).status;
    let first = handle.current();
    assert_eq!([ping(&first), ping(&first), ping(&first)], [200, 200, 401]);
    let second = handle.current();
    assert_ne!(second, first);
    assert_eq!(ping(&second), 200);
    handle.expire_now();
    assert_eq!(ping(&second), 401);
    let (user, password, expires) = handle.issue();
    assert_eq!((user.clone(), password.clone()), handle.current());
    assert!(expires > SystemTime::now() + Duration::from_secs(11 * 3600));
    assert_eq!(ping(&(user, password)), 200);
    let stats = rotating.stats();
    assert_eq!((stats.unauthorized, stats.stale_tokens), (2, 2));
    assert_eq!(
        (stats.rotations, stats.expired_tokens, stats.tokens_issued),
        (2, 0, 0)
    );
}
