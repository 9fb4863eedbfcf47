//! ECR's quotas and refusals as a user meets them, against the rig's ECR
//! front (`rig::FaultProxy` with ECR behaviours) in front of real registries,
//! skopeo as the digest oracle:
//!
//! * 20 concurrent `ecr-bridge copy` processes (as 20 Lambda containers
//!   would be) under ECR's PutImage quota of 10/s all complete;
//! * a referrer the target refuses leaves the image replicated and is
//!   reported (`referrers_failed`, a warning with the registry's message);
//! * a blob mount refused (403) or not done (202, `BLOB_MOUNTING` off) falls
//!   back to an upload;
//! * an expired token given to the CLI is a permanent failure that says so;
//! * throttling is waited out by time, beyond the attempt budget.
//!
//! Figures are printed on stderr (`--no-capture` shows them), never
//! asserted; `make bench` reads the `quota-bench:` line of the first test.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use ecr_bridge::copy::{CopyOptions, ImageCopier};
use ecr_bridge::registry::RetryPolicy;
use rig::{
    assert_same_image, sha256_digest, skopeo_digest, skopeo_inspect_raw, EcrApi, EcrQuotas,
    FaultProxy, ImageSpec, MountBehaviour, ProxyOptions, Registry, TokenRotation, OCI_INDEX,
    OCI_MANIFEST,
};
use serde_json::{json, Value};

const SRC_ACCOUNT: &str = "111111111111";
const DST_ACCOUNT: &str = "222222222222";

/// ECR's default PutImage quota per account and region (Service Quotas).
const PUT_IMAGE_PER_SECOND: f64 = 10.0;

/// cosign's sigstore bundle type before v0.3: a media type with a parameter,
/// which ECR refuses (aws/containers-roadmap#2306, sigstore/sigstore-js#1058).
const BUNDLE_V02: &str = "application/vnd.dev.sigstore.bundle+json;version=0.2";
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

fn put_image_quota(per_second: f64) -> EcrQuotas {
    EcrQuotas {
        put_image: Some(per_second),
        ..EcrQuotas::default()
    }
}

fn referrer_copier() -> ImageCopier {
    ImageCopier::new(CopyOptions {
        copy_referrers: true,
        ..CopyOptions::default()
    })
}

/// `ecr-bridge copy SOURCE DEST` with the source's real credentials and
/// `dest_creds` for the destination, both through the environment.
fn cli_copy(src: &Registry, source: &str, dest: &str, dest_creds: &str) -> Output {
    Command::new(cli_binary())
        .args([
            "copy",
            &format!("{}/{source}", src.host()),
            dest,
            "--src-creds-env",
            "SRC_CREDS",
            "--dest-creds-env",
            "DST_CREDS",
            "--plain-http-loopback",
        ])
        .env("SRC_CREDS", src.creds())
        .env("DST_CREDS", dest_creds)
        .env_remove("ECR_BRIDGE_LOG")
        .output()
        .expect("running ecr-bridge")
}

/// Uploads `bytes` as a blob of `repo` straight to the registry.
fn put_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let r = reg.http("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("Location");
    let path = &location[location.find("/v2/").expect("/v2/ in Location")..];
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = reg.http(
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    digest
}

/// PUTs a manifest straight to the registry; returns its digest.
fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let r = reg.http(
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        body,
    );
    assert_eq!(
        r.status,
        201,
        "PUT {repo}:{reference}: {}",
        String::from_utf8_lossy(&r.body)
    );
    sha256_digest(body)
}

/// A sigstore-bundle artifact manifest (empty config, one bundle layer of
/// `layer_type`), optionally an OCI 1.1 referrer of `subject`
/// (digest, size of an image manifest). Its blobs are pushed to `repo`.
fn bundle_manifest(
    reg: &Registry,
    repo: &str,
    layer_type: &str,
    subject: Option<(&str, usize)>,
) -> Vec<u8> {
    let bundle = json!({"mediaType": layer_type, "verificationMaterial": {}, "seed": repo});
    let bundle = serde_json::to_vec(&bundle).unwrap();
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": layer_type,
        "config": {"mediaType": OCI_EMPTY, "digest": put_blob(reg, repo, b"{}"), "size": 2},
        "layers": [{"mediaType": layer_type, "digest": put_blob(reg, repo, &bundle), "size": bundle.len()}],
    });
    if let Some((digest, size)) = subject {
        doc["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size});
    }
    serde_json::to_vec(&doc).unwrap()
}

/// The target registry's digest for `repo:reference`, asked directly (no front).
fn target_digest(reg: &Registry, repo: &str, reference: &str) -> Option<String> {
    let accept = [OCI_MANIFEST, OCI_INDEX].join(",");
    let r = reg.http(
        "HEAD",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", &accept)],
        b"",
    );
    (r.status == 200)
        .then(|| r.header("docker-content-digest").map(str::to_string))
        .flatten()
}

#[test]
fn given_a_put_image_quota_of_10_per_second_when_twenty_concurrent_cli_copies_of_a_3_platform_image_run_then_all_complete_digest_identical(
) {
    const COPIES: usize = 20;
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &multi_arch_spec(), "app", "v1");
    // Every repository exists (Repositories::Any): only the quota is in the way.
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            quotas: put_image_quota(PUT_IMAGE_PER_SECOND),
            ..ProxyOptions::default()
        },
    );

    // Separate processes, as separate Lambda containers are: no rate limiter
    // is shared, each learns the quota from its own 429s.
    let started = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut timeline: Vec<(f64, u64)> = Vec::new();
    let runs: Vec<(usize, Output, Duration)> = std::thread::scope(|scope| {
        let (src, front, done, timeline) = (&src, &front, &done, &mut timeline);
        // When the manifest PUTs got through, for the figures.
        scope.spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let n = front.stats().manifest_puts_forwarded;
                if timeline.last().is_none_or(|&(_, m)| m != n) {
                    timeline.push((started.elapsed().as_secs_f64(), n));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let creds = dst.creds();
        let handles: Vec<_> = (0..COPIES)
            .map(|i| {
                let creds = creds.clone();
                scope.spawn(move || {
                    let t = Instant::now();
                    let dest = format!("{}/mirror/r{i:02}:v1", front.host());
                    let out = cli_copy(src, "app:v1", &dest, &creds);
                    (i, out, t.elapsed())
                })
            })
            .collect();
        let runs = handles.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        runs
    });
    let wall = started.elapsed();
    // From the first manifest PUT to the last: the part the quota governs
    // (before it, the blobs; after it, the process exits).
    let first_put = timeline.iter().find(|&&(_, n)| n > 0).map_or(0.0, |p| p.0);
    let last_put = timeline.last().map_or(0.0, |p| p.0);

    let stats = front.stats();
    let completed = runs.iter().filter(|(_, o, _)| o.status.success()).count();
    let puts = stats.manifest_puts_forwarded;
    let floor = puts as f64 / PUT_IMAGE_PER_SECOND;
    let mut each: Vec<f64> = runs.iter().map(|(_, _, d)| d.as_secs_f64()).collect();
    each.sort_by(f64::total_cmp);
    eprintln!(
        "quota: {completed}/{COPIES} concurrent copies complete in {:.2} s; the quota's floor {floor:.1} s \
         ({puts} manifest PUTs / {PUT_IMAGE_PER_SECOND} per s): {:.2}x; {} PutImage 429s \
         ({} 429s in all); per copy {:.2}/{:.2}/{:.2} s min/median/max; manifest PUTs from \
         {first_put:.2} s to {last_put:.2} s ({:.1} per s); front: {stats}",
        wall.as_secs_f64(),
        wall.as_secs_f64() / floor,
        stats.put_image_throttled,
        stats.quota_throttled,
        each[0],
        each[each.len() / 2],
        each[each.len() - 1],
        puts as f64 / (last_put - first_put).max(0.001),
    );
    let mut per_second = vec![0u64; last_put.ceil() as usize + 1];
    let mut before = 0;
    for &(t, n) in &timeline {
        per_second[t as usize] += n - before;
        before = n;
    }
    eprintln!("quota: manifest PUTs forwarded per second of the run: {per_second:?}");
    eprintln!(
        "quota-bench: completed={completed} copies={COPIES} wall_s={:.2} floor_s={floor:.2} puts={puts} \
         throttled={} first_put_s={first_put:.2} last_put_s={last_put:.2}",
        wall.as_secs_f64(),
        stats.put_image_throttled
    );

    let failed: Vec<String> = runs
        .iter()
        .filter(|(_, o, _)| !o.status.success())
        .map(|(i, o, d)| {
            format!(
                "r{i:02}: {} after {d:.1?}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}\nfront: {stats}");
    for (i, out, _) in &runs {
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("r{i:02}: stdout is not one JSON report ({e})"));
        assert_eq!(report["digest"], image.layout.digest.as_str(), "r{i:02}");
        assert_eq!(
            (
                report["manifests_copied"].as_u64(),
                report["tags_set"].as_u64()
            ),
            (Some(4), Some(1)),
            "r{i:02}: {report}"
        );
        assert_eq!(
            target_digest(&dst, &format!("mirror/r{i:02}"), "v1").as_deref(),
            Some(image.layout.digest.as_str()),
            "r{i:02}: the tag names the source digest"
        );
    }
    for i in [0, COPIES / 2, COPIES - 1] {
        assert_same_image(&src, "app:v1", &dst, &format!("mirror/r{i:02}:v1"));
    }
    // The front really enforced the quota: copies were refused and waited.
    assert!(stats.put_image_throttled > 0, "{stats}");
    // What the copies need and no more: per copy 3 children by digest and
    // the index once, by its tag (one PutImage stores it and sets the tag;
    // by digest and then by tag would be 5, 100 in all). A 429 is not
    // forwarded, so retries of throttled PUTs add nothing here.
    assert_eq!(puts, 4 * COPIES as u64, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_signature_whose_media_type_has_parameters_when_copied_with_referrers_to_a_target_that_refuses_it_then_the_image_is_replicated_and_the_refusal_reported(
) {
    let logs = capture_all_logs();
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &ImageSpec::single(&[64 << 10]), "app", "v1");
    let hex = image
        .layout
        .digest
        .trim_start_matches("sha256:")
        .to_string();
    // cosign's tag schema: a v0.2 sigstore bundle as the signature (refused),
    // an SBOM attestation without parameters (accepted).
    let sig_tag = format!("sha256-{hex}.sig");
    let sig = bundle_manifest(&src, "app", BUNDLE_V02, None);
    put_manifest(&src, "app", &sig_tag, OCI_MANIFEST, &sig);
    let att_tag = format!("sha256-{hex}.att");
    let att = push_image(&src, &ImageSpec::artifact().with_seed(9), "app", &att_tag);
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            refuse_media_type_parameters: true,
            ..ProxyOptions::default()
        },
    );

    let report = referrer_copier()
        .copy(
            &at(&src, "app"),
            &tag("v1"),
            &via(&front, &dst, "mirror", fast_retry()),
            &tags(&["v1"]),
        )
        .await
        .expect("a refused referrer does not fail the image");

    let stats = front.stats();
    assert_eq!(
        (report.referrers_failed, report.referrers_copied),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(report.digest.to_string(), image.layout.digest);
    assert_same_image(&src, "app:v1", &dst, "mirror:v1");
    assert_eq!(
        skopeo_digest(&dst, &format!("mirror:{att_tag}")).unwrap(),
        att.layout.digest,
        "the accepted referrer followed the image"
    );
    assert!(skopeo_inspect_raw(&dst, &format!("mirror:{sig_tag}")).is_err());
    assert_eq!(stats.referrers_refused, 1, "{stats}");
    // The warning carries the registry's own reason.
    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("target refused a referrer"))
        .unwrap_or_else(|| panic!("no warning about the refused referrer in:\n{text}"));
    assert!(warning.contains("\"WARN\""), "{warning}");
    assert!(
        warning.contains(&sig_tag)
            && warning.contains("media types with parameters are not supported"),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_oci_referrer_with_a_subject_when_copied_with_referrers_to_a_target_that_refuses_referrers_then_the_image_is_replicated_and_the_refusal_reported(
) {
    let logs = capture_all_logs();
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &ImageSpec::single(&[64 << 10]), "app", "v1");
    let subject_size = image.layout.manifest_bytes().len();
    // An OCI 1.1 referrer (a v0.3 sigstore bundle naming the image as its
    // subject). docker-registry 2.8 has no referrers API, so it is listed
    // as clients do then: in an index under the fallback tag sha256-<hex>.
    let referrer = bundle_manifest(
        &src,
        "app",
        BUNDLE_V03,
        Some((&image.layout.digest, subject_size)),
    );
    let referrer_digest = sha256_digest(&referrer);
    put_manifest(&src, "app", &referrer_digest, OCI_MANIFEST, &referrer);
    let fallback_tag = format!(
        "sha256-{}",
        image.layout.digest.trim_start_matches("sha256:")
    );
    let listing = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": referrer_digest,
                       "size": referrer.len(), "artifactType": BUNDLE_V03}],
    });
    put_manifest(
        &src,
        "app",
        &fallback_tag,
        OCI_INDEX,
        &serde_json::to_vec(&listing).unwrap(),
    );
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            refuse_referrers: true,
            ..ProxyOptions::default()
        },
    );

    let report = referrer_copier()
        .copy(
            &at(&src, "app"),
            &tag("v1"),
            &via(&front, &dst, "mirror", fast_retry()),
            &tags(&["v1"]),
        )
        .await
        .expect("a refused referrer does not fail the image");

    let stats = front.stats();
    assert_eq!(report.referrers_failed, 1, "{report:?}");
    assert_eq!(report.referrers_copied, 0, "{report:?}");
    assert_same_image(&src, "app:v1", &dst, "mirror:v1");
    assert_eq!(target_digest(&dst, "mirror", &referrer_digest), None);
    assert_eq!(target_digest(&dst, "mirror", &fallback_tag), None);
    assert_eq!(stats.referrers_refused, 1, "{stats}");
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("target refused a referrer")
            && l.contains("OCI 1.1 referrers) are not supported")),
        "no warning with the registry's reason in:\n{text}"
    );
}

/// Copies a 3-blob image between two repositories of one registry through
/// a front answering mounts with `mount`; checks every blob was uploaded.
async fn copy_within_one_registry(mount: MountBehaviour) {
    let reg = Registry::start(DST_ACCOUNT);
    let image = push_image(
        &reg,
        &ImageSpec::single(&[300 << 10, 100 << 10]),
        "app",
        "v1",
    );
    let blobs = image.layout.blobs.len() as u32;
    let front = FaultProxy::start(
        &reg,
        ProxyOptions {
            mount,
            ..ProxyOptions::default()
        },
    );
    // One endpoint for both sides, so the engine asks for mounts.
    let (from, to) = (
        via(&front, &reg, "app", fast_retry()),
        via(&front, &reg, "team/app", fast_retry()),
    );

    let report = copy(&from, &tag("v1"), &to, &["v1"])
        .await
        .unwrap_or_else(|e| panic!("{mount:?}: {e}"));

    let stats = front.stats();
    eprintln!("quota: mount {mount:?}: {report:?}; front: {stats}");
    assert_eq!(
        (report.blobs_mounted, report.blobs_uploaded),
        (0, blobs),
        "{mount:?}: {report:?}"
    );
    assert_eq!(report.bytes_uploaded, image.layout.total_blob_bytes);
    // A mount was asked for each blob, and each was refused or not done.
    assert_eq!(stats.mounts_refused, u64::from(blobs), "{mount:?}: {stats}");
    assert_eq!(
        stats.blob_puts_forwarded,
        u64::from(blobs),
        "{mount:?}: {stats}"
    );
    assert_same_image(&reg, "app:v1", &reg, "team/app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_mount_refused_with_403_when_copying_within_one_registry_then_each_blob_is_uploaded_instead(
) {
    copy_within_one_registry(MountBehaviour::Denied).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn given_blob_mounting_disabled_when_copying_within_one_registry_then_each_blob_is_uploaded_to_the_session_the_registry_opened(
) {
    copy_within_one_registry(MountBehaviour::Disabled).await;
}

/// What a user must read when the token they gave has expired: it expired,
/// how to get a new one, ECR's own words; and not the token.
fn assert_says_token_expired(out: &Output, password: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "permanent: {stderr}");
    assert!(stderr.contains("token has expired"), "{stderr}");
    assert!(stderr.contains("aws ecr get-login-password"), "{stderr}");
    assert!(
        stderr.contains("Your authorization token has expired. Reauthenticate and try again."),
        "ECR's message: {stderr}"
    );
    assert!(!stderr.contains("transient"), "{stderr}");
    assert!(!stderr.contains(password), "the token leaked: {stderr}");
    assert!(out.stdout.is_empty(), "no report");
}

#[test]
fn given_an_expired_token_as_fixed_cli_credentials_when_copying_then_exit_1_saying_it_expired_and_how_to_get_a_new_one(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[64 << 10]), "app", "v1");
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring {
                lifetime: Duration::from_secs(60),
            }),
            ..ProxyOptions::default()
        },
    );
    let (user, password, _) = front.tokens().issue();
    front.tokens().expire_now();

    let out = cli_copy(
        &src,
        "app:v1",
        &format!("{}/mirror:v1", front.host()),
        &format!("{user}:{password}"),
    );

    let stats = front.stats();
    assert_says_token_expired(&out, &password);
    assert!(stats.expired_tokens >= 1, "{stats}");
    assert_eq!(stats.forwarded, 0, "nothing got through: {stats}");
}

#[test]
fn given_a_token_that_expires_mid_copy_as_fixed_cli_credentials_when_copying_then_exit_1_saying_it_expired_and_no_tag_is_set(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &multi_arch_spec(), "app", "v1");
    // PutImage at one per 2 s: the 4 manifest PUTs take 6 s at least, so
    // the 3-second token expires while they wait their turn (or, on a slow
    // machine, while the blobs are still moving).
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            tokens: Some(TokenRotation::Expiring {
                lifetime: Duration::from_secs(3),
            }),
            quotas: put_image_quota(0.5),
            ..ProxyOptions::default()
        },
    );
    let (user, password, _) = front.tokens().issue();

    let started = Instant::now();
    let out = cli_copy(
        &src,
        "app:v1",
        &format!("{}/mirror:v1", front.host()),
        &format!("{user}:{password}"),
    );

    let stats = front.stats();
    eprintln!(
        "quota: token expired mid-copy: {} after {:.1?}; front: {stats}; stderr: {}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert_says_token_expired(&out, &password);
    assert!(stats.expired_tokens >= 1, "{stats}");
    assert!(
        stats.blob_puts_forwarded > 0,
        "the token worked until it expired: {stats}"
    );
    assert_eq!(
        target_digest(&dst, "mirror", "v1"),
        None,
        "no tag for an incomplete image"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_throttling_beyond_the_attempt_budget_when_a_3_platform_image_is_copied_then_it_completes_by_waiting(
) {
    const COPIES: usize = 2;
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &multi_arch_spec(), "app", "v1");
    let front = FaultProxy::start(
        &dst,
        ProxyOptions {
            quotas: put_image_quota(2.0),
            ..ProxyOptions::default()
        },
    );
    // Two attempts per request: a failure-counting budget would give up on
    // the second 429 of any request. Short throttle waits (up to 50 ms), so
    // a PUT waiting 500 ms for the quota's next token meets several 429s.
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(200),
        max_total_wait: Duration::from_secs(2),
        max_throttle_wait: Duration::from_secs(60),
        max_throttle_backoff: Duration::from_millis(50),
    };

    let started = Instant::now();
    let results = futures_util::future::join_all((0..COPIES).map(|i| {
        let from = at(&src, "app");
        let to = via(&front, &dst, &format!("mirror/r{i}"), retry.clone());
        async move { copy(&from, &tag("v1"), &to, &["v1"]).await }
    }))
    .await;
    let elapsed = started.elapsed();

    let stats = front.stats();
    let most = front.quota_throttled_most(EcrApi::PutImage);
    eprintln!(
        "quota: {COPIES} in-process copies under PutImage 2/s with 2 attempts: {:.1} s, \
         {} manifest PUTs, {} 429s, at most {most} for one PUT",
        elapsed.as_secs_f64(),
        stats.manifest_puts_forwarded,
        stats.put_image_throttled
    );
    for (i, r) in results.iter().enumerate() {
        let report = r
            .as_ref()
            .unwrap_or_else(|e| panic!("r{i}: {e}; front: {stats}"));
        assert_eq!(report.digest.to_string(), image.layout.digest);
    }
    assert_same_image(&src, "app:v1", &dst, "mirror/r0:v1");
    assert_eq!(
        target_digest(&dst, "mirror/r1", "v1").as_deref(),
        Some(image.layout.digest.as_str())
    );
    // Some PUT met two 429s or more, more than two attempts allow for
    // failures, and the copies still completed.
    assert!(most >= 2, "the most 429s one PUT met: {most}; {stats}");
}
