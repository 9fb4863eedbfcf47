//! Blob mounts: forwarded, made a plain upload, or refused with 403.

use super::*;

#[test]
fn given_each_mount_behaviour_when_a_blob_mount_is_asked_then_it_is_forwarded_made_a_plain_upload_or_refused(
) {
    let reg = Registry::start(ACCOUNT);
    let bytes = b"a layer to mount";
    let digest = put_blob(&reg, "src", bytes);
    let proxy = |mount| {
        front(
            &reg,
            ProxyOptions {
                mount,
                ..ProxyOptions::default()
            },
        )
    };
    let mount_path = |repo: &str| format!("/v2/{repo}/blobs/uploads/?mount={digest}&from=src");
    let held = |repo: &str| {
        reg.http("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"")
            .status
    };

    // Forward (default): the registry mounts.
    let fwd = proxy(MountBehaviour::Forward);
    let r = send(&fwd, &reg, "POST", &mount_path("dst-fwd"));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(held("dst-fwd"), 200);
    assert_eq!(fwd.stats().mounts_refused, 0);

    // Disabled: a plain upload POST reaches the registry; the client gets
    // a session it can finish.
    let off = proxy(MountBehaviour::Disabled);
    let mark = reg.request_mark();
    let r = send(&off, &reg, "POST", &mount_path("dst-off"));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("Location").to_string();
    assert!(
        location.contains("/v2/dst-off/blobs/uploads/"),
        "{location}"
    );
    assert_eq!(held("dst-off"), 404);
    let posts: Vec<String> = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.uri)
        .collect();
    assert_eq!(posts, ["/v2/dst-off/blobs/uploads/"]);
    let octets = [("Content-Type", "application/octet-stream")];
    let r = reg.http_at(
        &off.host(),
        "PUT",
        &upload_path(&location, &digest),
        &octets,
        bytes,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(held("dst-off"), 200);
    // Other query parameters survive.
    let mark = reg.request_mark();
    let r = send(
        &off,
        &reg,
        "POST",
        &format!("{}&rig=1", mount_path("dst-off2")),
    );
    assert_eq!(r.status, 202);
    let posts: Vec<String> = reg
        .requests_since(mark)
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(posts, ["/v2/dst-off2/blobs/uploads/?rig=1"]);
    assert_eq!(off.stats().mounts_refused, 2);

    // Denied: 403 DENIED naming the permission, and not forwarded.
    let denied = proxy(MountBehaviour::Denied);
    let r = send(&denied, &reg, "POST", &mount_path("dst-no"));
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let (code, message) = error_of(&r);
    assert_eq!(code, "DENIED");
    assert!(
        message.contains("is not authorized to perform: ecr:GetDownloadUrlForLayer")
            && message.contains(":repository/src"),
        "{message}"
    );
    assert_eq!(denied.stats().forwarded, 0);
    assert_eq!(held("dst-no"), 404);
    // A plain upload is not a mount.
    assert_eq!(
        send(&denied, &reg, "POST", "/v2/dst-no/blobs/uploads/").status,
        202
    );
    assert_eq!(denied.stats().mounts_refused, 1);
    assert_eq!(denied.stats().forwarded, 1);
}
