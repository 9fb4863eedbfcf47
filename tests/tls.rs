//! HTTPS, as in production: the registries, the ECR front and the S3-like
//! redirect host serve TLS with certificates of the rig's own CA, which the
//! client trusts through its normal root store (`SSL_CERT_FILE`, see
//! [`rig::trust_rig_ca`], called first in each test: a client built before
//! it never sees the CA). A certificate from another authority, for another
//! name or expired is refused, permanently and saying so.

mod common;

use common::events::push_event;
use common::stage::{role, Stage, REGION, SOURCE};
use common::*;
use ecr_bridge::registry::RegistryError;
use rig::{
    assert_same_image, rig_tls, skopeo_digest, trust_rig_ca, FaultProxy, ImageSpec, ProxyOptions,
    Registry, RegistryOptions, ServerCert,
};
use serde_json::json;

const SRC_ACCOUNT: &str = "111111111111";
const DST_ACCOUNT: &str = "222222222222";

fn tls_front(reg: &Registry) -> FaultProxy {
    FaultProxy::start(
        reg,
        ProxyOptions {
            tls: Some(ServerCert::Rig),
            ..ProxyOptions::ecr()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn given_tls_registries_and_a_tls_ecr_front_when_a_single_and_a_three_platform_image_are_copied_then_both_arrive_byte_for_byte(
) {
    trust_rig_ca();
    let (src, dst) = (
        Registry::start_tls(SRC_ACCOUNT),
        Registry::start_tls(DST_ACCOUNT),
    );
    let front = tls_front(&dst);
    front.create_repository("mirror/app", false);
    let single = push_image(&src, &ImageSpec::single(&[300_000, 40_000]), "app", "v1");
    let multi = push_image(
        &src,
        &ImageSpec::multi_arch(&platforms(), &[200_000, 30_000], 1),
        "app",
        "multi",
    );
    assert!(src.url().starts_with("https://") && front.url().starts_with("https://"));

    let a = copy(
        &at(&src, "app"),
        &tag("v1"),
        &via(&front, &dst, "mirror/app", fast_retry()),
        &["v1"],
    )
    .await
    .unwrap();
    let b = copy(
        &at(&src, "app"),
        &tag("multi"),
        &via(&front, &dst, "mirror/app", fast_retry()),
        &["multi"],
    )
    .await
    .unwrap();

    assert_same_image(&src, "app:v1", &dst, "mirror/app:v1");
    assert_same_image(&src, "app:multi", &dst, "mirror/app:multi");
    assert_eq!(a.digest.to_string(), single.layout.digest);
    assert_eq!(b.digest.to_string(), multi.layout.digest);
    assert_eq!(b.manifests_copied, 4, "3 children + the index");
    let stats = front.stats();
    assert!(stats.manifest_puts_forwarded >= 5, "{stats}");
    assert_eq!(stats.patches, 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_blob_downloads_redirected_to_an_https_s3_like_host_when_copied_then_they_come_from_it_without_credentials(
) {
    trust_rig_ca();
    let src = Registry::start_with(RegistryOptions {
        redirect_blobs: true,
        ..RegistryOptions::new(SRC_ACCOUNT).with_tls()
    });
    let dst = Registry::start_tls(DST_ACCOUNT);
    let image = push_image(&src, &ImageSpec::single(&[300_000, 40_000]), "app", "v1");
    let s3 = src.blob_host().expect("blob host");
    assert!(s3.url().starts_with("https://127.0.0.1:"), "{}", s3.url());
    // The stand-in refuses a request that carries Authorization, as S3 does.
    let leaked = rig::http_request(
        &s3.target(),
        "GET",
        "/anything",
        &[("Authorization", &src.auth_header())],
        b"",
    )
    .unwrap();
    assert_eq!(leaked.status, 400);

    copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .unwrap();

    assert_same_image(&src, "app:v1", &dst, "app:v1");
    let downloads: Vec<_> = s3
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path != "/anything")
        .collect();
    assert_eq!(
        downloads.len(),
        image.layout.blobs.len(),
        "every blob came through the HTTPS redirect: {downloads:?}"
    );
    assert!(
        downloads
            .iter()
            .all(|r| !r.had_authorization && r.status == 200),
        "{downloads:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_registry_endpoints_over_https_when_the_replicator_handles_a_push_then_the_image_lands_in_the_target_account(
) {
    trust_rig_ca();
    let stage = Stage::builder()
        .accounts(&[SOURCE, DST_ACCOUNT])
        .tls()
        .build();
    let endpoints = stage.endpoints();
    assert!(endpoints.contains("=https://127.0.0.1:"), "{endpoints}");
    let image = push_image(
        stage.source(),
        &ImageSpec::multi_arch(&platforms()[..2], &[100_000, 20_000], 1),
        "app",
        "2501.0001",
    );
    let mapping = json!({"version": 1, "rules": [{"name": "app", "match": {"exact": "app"},
        "create_repository": true,
        "destinations": [{"account": DST_ACCOUNT, "region": REGION, "role_arn": role(DST_ACCOUNT), "repository": "mirror/app"}]}]});
    let (replicator, config) = stage.replicator(&mapping).await;
    let event = push_event("app", &image.layout.digest, "2501.0001");

    let out = image_replicator::handler::handle(&replicator, &config, event)
        .await
        .unwrap();

    assert_eq!(out["result"], "done", "{out}");
    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert_same_image(
        stage.source(),
        "app:2501.0001",
        stage.target(),
        "mirror/app:2501.0001",
    );
}

/// The copy of a small image from a good TLS registry to one serving
/// `cert`: its error, and the requests the target saw.
async fn copy_to_a_registry_serving(cert: ServerCert) -> (RegistryError, Registry, usize) {
    let src = Registry::start_tls(SRC_ACCOUNT);
    let dst = Registry::start_with(RegistryOptions {
        tls: Some(cert),
        ..RegistryOptions::new(DST_ACCOUNT)
    });
    push_image(&src, &ImageSpec::single(&[20_000]), "app", "v1");
    let err = copy(&at(&src, "app"), &tag("v1"), &at(&dst, "app"), &["v1"])
        .await
        .expect_err("the target's certificate must be refused");
    let ecr_bridge::CopyError::Registry(e) = err else {
        panic!("not a registry error: {err}");
    };
    let seen = dst.requests().len();
    (e, dst, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_target_whose_certificate_is_from_another_authority_for_another_name_or_expired_when_copying_then_it_is_refused_permanently_naming_the_host_and_nothing_is_pushed(
) {
    trust_rig_ca();
    let cases = [
        (ServerCert::OtherAuthority, "not trusted", "UnknownIssuer"),
        (
            ServerCert::OtherName,
            "not valid for this name",
            "not valid for name \"127.0.0.1\"",
        ),
        (ServerCert::Expired, "expired", "certificate expired"),
    ];
    for (cert, problem, detail) in cases {
        let (err, dst, seen) = copy_to_a_registry_serving(cert).await;
        let text = err.to_string();

        assert!(
            matches!(err, RegistryError::Certificate { .. }),
            "{cert:?}: {err:?}"
        );
        assert!(!err.is_retryable(), "{cert:?}: {text}");
        assert!(
            text.contains(&format!(
                "TLS certificate of {} {problem}: invalid peer certificate",
                dst.host()
            )),
            "{cert:?}: {text}"
        );
        assert!(text.contains(detail), "{cert:?}: {text}");
        assert!(!text.contains('?'), "no query string: {text}");
        assert_eq!(seen, 0, "{cert:?}: no request got past the handshake");
    }
    // The hint for an unknown authority says what to do.
    let (err, _, _) = copy_to_a_registry_serving(ServerCert::OtherAuthority).await;
    assert!(err.to_string().contains("SSL_CERT_FILE"), "{err}");
}

#[test]
fn given_the_cli_against_tls_registries_when_ssl_cert_file_names_the_rig_ca_then_it_copies_and_without_it_it_fails_permanently(
) {
    // No trust_rig_ca(): the CA reaches the child only, through its environment.
    let (src, dst) = (
        Registry::start_tls(SRC_ACCOUNT),
        Registry::start_tls(DST_ACCOUNT),
    );
    let image = push_image(
        &src,
        &ImageSpec::multi_arch(&platforms(), &[100_000, 10_000], 1),
        "app",
        "v1",
    );
    let run = |ssl_cert_file: Option<std::path::PathBuf>| {
        let mut cmd = std::process::Command::new(cli_binary());
        cmd.args([
            "copy",
            &format!("{}/app:v1", src.host()),
            &format!("{}/mirror/app", dst.host()),
            "--src-creds-env",
            "SRC_CREDS",
            "--dest-creds-env",
            "DST_CREDS",
            "--attempts",
            "2",
        ])
        .env("SRC_CREDS", src.creds())
        .env("DST_CREDS", dst.creds())
        .env_remove("SSL_CERT_FILE");
        if let Some(f) = ssl_cert_file {
            cmd.env("SSL_CERT_FILE", f);
        }
        cmd.output().unwrap()
    };

    let untrusted = run(None);
    let trusted = run(Some(rig_tls().bundle_path()));

    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "TLS certificate of {} not trusted: invalid peer certificate: UnknownIssuer",
            src.host()
        )),
        "{stderr}"
    );
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&trusted.stdout).expect("JSON report");
    assert_eq!(report["digest"], image.layout.digest.as_str());
    assert_eq!(
        skopeo_digest(&dst, "mirror/app:v1").unwrap(),
        image.layout.digest
    );
    assert_same_image(&src, "app:v1", &dst, "mirror/app:v1");
}

#[test]
fn given_a_plain_http_registry_addressed_over_https_when_the_cli_copies_then_it_says_so_at_the_first_answer_and_names_the_flag(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[10_000]), "app", "v1");
    // The front counts connections, whatever comes through them.
    let front = FaultProxy::start(&src, ProxyOptions::default());

    let out = std::process::Command::new(cli_binary())
        .args([
            "copy",
            &format!("{}/app:v1", front.host()),
            &format!("{}/mirror/app", dst.host()),
            "--src-creds-env",
            "SRC_CREDS",
            "--dest-creds-env",
            "DST_CREDS",
        ])
        .env("SRC_CREDS", src.creds())
        .env("DST_CREDS", dst.creds())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "permanent, not 75: {stderr}");
    assert!(
        stderr.contains(&format!("{} answered in plain HTTP, not TLS", front.host()))
            && stderr.contains("--plain-http-loopback"),
        "{stderr}"
    );
    assert_eq!(
        front.stats().requests,
        1,
        "one connection, no retries: {stderr}"
    );
}
