//! The copy engine and the replicator under faults and ECR's own behaviours,
//! through `rig::FaultProxy` in front of real registries.
//!
//! Fault decisions are seeded: `FAULT_SEED=<n> cargo nextest run -p
//! ecr-bridge-tests --test faults` replays a run; every failure message
//! names the seed. Figures are printed on stderr (`--nocapture` shows them).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ecr_bridge::copy::CopyError;
use ecr_bridge::registry::{
    BasicCredentials, CredentialSource, RegistryError, Repository, RetryPolicy,
};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use rig::{
    assert_same_image, sha256_digest, FaultProxy, FaultRates, ImageSpec, Layout, ProxyOptions,
    Registry, TokenHandle, TokenRotation,
};
use serde_json::Value;

const SRC_ACCOUNT: &str = "111111111111";
const DST_ACCOUNT: &str = "222222222222";

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_250_601)
}

/// Hands out the token the proxy accepts, fetched like ECR's
/// GetAuthorizationToken: once, then again only when the registry refused it
/// (the client asks for every request; a real source caches). Counts fetches.
#[derive(Debug)]
struct ProxyTokens {
    handle: TokenHandle,
    cached: std::sync::Mutex<Option<(String, String)>>,
    fetches: AtomicU32,
}

impl CredentialSource for ProxyTokens {
    fn credentials(
        &self,
        refresh: bool,
    ) -> BoxFuture<'_, Result<Option<BasicCredentials>, RegistryError>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().unwrap();
            if refresh || cached.is_none() {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                *cached = Some(self.handle.current());
            }
            let (user, password) = cached.clone().unwrap();
            Ok(Some(BasicCredentials::new(user, password)))
        })
    }
}

fn with_tokens(proxy: &FaultProxy, repo: &str) -> (Repository, Arc<ProxyTokens>) {
    let tokens = Arc::new(ProxyTokens {
        handle: proxy.tokens(),
        cached: std::sync::Mutex::new(None),
        fetches: AtomicU32::new(0),
    });
    let client = client_via(&proxy.url(), tokens.clone(), fault_retry());
    (Repository::new(client, repo), tokens)
}

/// Checks, straight against the registry (no proxy), that `repo` holds the
/// whole image: every manifest present and hashing to its digest, every
/// blob present with its size.
fn verify_image(reg: &Registry, repo: &str, layout: &Layout) -> Result<(), String> {
    for (digest, media_type) in &layout.manifests {
        let r = reg.http(
            "GET",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[("Accept", media_type)],
            b"",
        );
        if r.status != 200 || sha256_digest(&r.body) != *digest {
            return Err(format!(
                "{repo}: manifest {digest}: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    for (digest, size) in &layout.blobs {
        let r = reg.http("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        let len = r
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok());
        if r.status != 200 || len != Some(*size) {
            return Err(format!(
                "{repo}: blob {digest}: HTTP {}, {len:?} bytes",
                r.status
            ));
        }
    }
    Ok(())
}

/// Reads every blob of `layout` from `repo` and checks it hashes to its digest.
fn verify_blob_bytes(reg: &Registry, repo: &str, layout: &Layout) -> Result<(), String> {
    for (digest, size) in &layout.blobs {
        let r = reg.http("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        if r.status != 200 || r.body.len() as u64 != *size || sha256_digest(&r.body) != *digest {
            return Err(format!(
                "{repo}: blob {digest}: HTTP {}, {} bytes, sha256 {}",
                r.status,
                r.body.len(),
                sha256_digest(&r.body)
            ));
        }
    }
    Ok(())
}

/// Every tag and every manifest of `layout` that `repo` holds points only at
/// content `repo` also holds: a failed copy left nothing dangling.
fn assert_nothing_dangling(reg: &Registry, repo: &str, layout: &Layout, ctx: &str) {
    let tags = reg.http("GET", &format!("/v2/{repo}/tags/list"), &[], b"");
    let tags: Value = serde_json::from_slice(&tags.body).unwrap_or(Value::Null);
    let mut roots: Vec<String> = tags["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    roots.extend(layout.manifests.iter().map(|(d, _)| d.clone()));
    for reference in roots {
        let m = reg.http(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", &[rig::OCI_MANIFEST, rig::OCI_INDEX].join(","))],
            b"",
        );
        if m.status != 200 {
            continue;
        }
        let doc: Value = serde_json::from_slice(&m.body).expect("manifest JSON");
        let mut needed: Vec<(String, &str)> = Vec::new();
        for child in doc["manifests"].as_array().into_iter().flatten() {
            needed.push((child["digest"].as_str().unwrap().into(), "manifests"));
        }
        for blob in doc["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(doc.get("config"))
        {
            needed.push((blob["digest"].as_str().unwrap().into(), "blobs"));
        }
        for (digest, kind) in needed {
            let h = reg.http("HEAD", &format!("/v2/{repo}/{kind}/{digest}"), &[], b"");
            assert_eq!(
                h.status, 200,
                "{repo}:{reference} names {kind} {digest}, which the target lacks; {ctx}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn given_5xx_429_resets_and_truncation_when_a_multi_arch_image_is_replicated_100_times_then_all_complete_identical_and_uncorrupted(
) {
    const RUNS: usize = 100;
    let seed = seed();
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &multi_arch_spec(), "app", "v1");
    let rates = FaultRates {
        server_error: 0.05,
        throttle: 0.02,
        reset: 0.02,
        truncate: 0.01,
        slow: 0.01,
    };
    let opts = |seed| ProxyOptions {
        seed,
        rates: rates.clone(),
        slow_delay: Duration::from_millis(40),
        ..ProxyOptions::default()
    };
    // Different seeds so the two sides do not fail in lockstep.
    let src_proxy = FaultProxy::start(&src, opts(seed));
    let dst_proxy = FaultProxy::start(&dst, opts(seed.wrapping_add(1)));
    let started = Instant::now();

    let results: Vec<(usize, Result<ecr_bridge::copy::CopyReport, CopyError>)> =
        futures_util::stream::iter(0..RUNS)
            .map(|i| {
                let from = via(&src_proxy, &src, "app", fault_retry());
                let to = via(&dst_proxy, &dst, &format!("mirror/r{i:03}"), fault_retry());
                async move { (i, copy(&from, &tag("v1"), &to, &["v1"]).await) }
            })
            .buffer_unordered(6)
            .collect()
            .await;
    let elapsed = started.elapsed();

    let (s, d) = (src_proxy.stats(), dst_proxy.stats());
    let ctx = format!(
        "FAULT_SEED={seed}; source proxy: {s}; target proxy: {d}; recent target faults: {:?}",
        dst_proxy.recent_faults(10)
    );
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("r{i:03}: {e}")))
        .collect();
    let completed = RUNS - failed.len();
    eprintln!(
        "faults: seed={seed} replications={completed}/{RUNS} in {:.1}s; source proxy: {s}; target proxy: {d}",
        elapsed.as_secs_f64()
    );
    assert!(failed.is_empty(), "{failed:#?}\n{ctx}");
    for (i, r) in &results {
        let report = r.as_ref().unwrap();
        assert_eq!(
            report.digest.to_string(),
            image.layout.digest,
            "r{i:03}; {ctx}"
        );
        assert_eq!(
            report.manifests_copied, 4,
            "r{i:03}: fresh repository; {ctx}"
        );
    }
    // Every replication, checked without the proxy: the tag names the
    // source digest, every manifest hashes to its digest, every blob is
    // there with its size. docker-registry keeps one copy of a blob's bytes
    // for all repositories (and refuses an upload whose bytes do not match
    // its digest), so reading and hashing each blob once, through the first
    // and the last repository, covers the content of them all.
    for i in [0, RUNS - 1] {
        verify_blob_bytes(&dst, &format!("mirror/r{i:03}"), &image.layout)
            .unwrap_or_else(|e| panic!("{e}; {ctx}"));
    }
    for i in 0..RUNS {
        let repo = format!("mirror/r{i:03}");
        let head = dst.http(
            "HEAD",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Accept", rig::OCI_INDEX)],
            b"",
        );
        assert_eq!(
            head.header("docker-content-digest"),
            Some(image.layout.digest.as_str()),
            "{repo}; {ctx}"
        );
        verify_image(&dst, &repo, &image.layout).unwrap_or_else(|e| panic!("{e}; {ctx}"));
    }
    for i in [0, RUNS / 2, RUNS - 1] {
        assert_same_image(&src, "app:v1", &dst, &format!("mirror/r{i:03}:v1"));
    }
    eprintln!(
        "faults: 100-replication test: copies {:.1}s, with verification {:.1}s",
        elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The faults really happened, of every kind, on both sides.
    let total = |f: fn(&rig::ProxyStats) -> u64| f(&s) + f(&d);
    assert!(total(|x| x.server_errors) > 0, "{ctx}");
    assert!(total(|x| x.throttled) > 0, "{ctx}");
    assert!(total(|x| x.resets_mid_body) > 0, "{ctx}");
    assert!(total(|x| x.truncated) > 0, "{ctx}");
    assert!(s.faults() > 0 && d.faults() > 0, "{ctx}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_target_goes_down_mid_copy_when_copying_then_a_retryable_error_within_the_retry_budget_and_nothing_dangling(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    let image = push_image(&src, &multi_arch_spec(), "app", "v1");
    // About 40 requests make this copy; from the 25th on, every connection is reset.
    let proxy = FaultProxy::start(
        &dst,
        ProxyOptions {
            down_after: Some(24),
            ..ProxyOptions::default()
        },
    );
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_total_wait: Duration::from_millis(400),
        ..RetryPolicy::default()
    };
    // Retries nest: a blob is retried whole (up to max_attempts, waiting at
    // most max_total_wait in all), and each request within an attempt has
    // its own budget. So the worst case is (max_attempts + 1) budgets.
    let budget = policy.max_total_wait * (policy.max_attempts + 1);
    let slack = Duration::from_secs(2);

    let started = Instant::now();
    let err = copy(
        &at(&src, "app"),
        &tag("v1"),
        &via(&proxy, &dst, "app", policy),
        &["v1"],
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();

    let stats = proxy.stats();
    eprintln!(
        "faults: registry down mid-copy: failed after {} ms (budget {} ms + {} ms slack); {} blob uploads got through first; {err}",
        elapsed.as_millis(),
        budget.as_millis(),
        slack.as_millis(),
        stats.blob_puts_forwarded
    );
    assert!(stats.blob_puts_forwarded > 0, "went down mid-copy: {stats}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().contains(&proxy.host()),
        "names the registry: {err}"
    );
    assert!(
        elapsed <= budget + slack,
        "{elapsed:?} > {budget:?} + {slack:?}"
    );
    assert_eq!(
        dst.http("HEAD", "/v2/app/manifests/v1", &[], b"").status,
        404,
        "no tag may exist for an incomplete image"
    );
    assert_nothing_dangling(&dst, "app", &image.layout, "after the failure");

    // Back up: the same copy completes, reusing what got through.
    proxy.set_down(false);
    let report = copy(
        &at(&src, "app"),
        &tag("v1"),
        &via(&proxy, &dst, "app", fault_retry()),
        &["v1"],
    )
    .await
    .unwrap();
    assert!(report.blobs_skipped > 0, "{report:?}");
    assert_same_image(&src, "app:v1", &dst, "app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_tokens_that_expire_every_few_requests_when_copying_then_credentials_are_refreshed_and_the_copy_succeeds(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &multi_arch_spec(), "app", "v1");
    let rotating = |k| ProxyOptions {
        tokens: Some(TokenRotation::EveryRequests(k)),
        ..ProxyOptions::default()
    };
    let src_proxy = FaultProxy::start(&src, rotating(7));
    let dst_proxy = FaultProxy::start(&dst, rotating(10));
    let (from, src_tokens) = with_tokens(&src_proxy, "app");
    let (to, dst_tokens) = with_tokens(&dst_proxy, "app");

    let report = copy(&from, &tag("v1"), &to, &["v1"]).await;

    let (s, d) = (src_proxy.stats(), dst_proxy.stats());
    eprintln!(
        "faults: token rotations survived: source {} (401s {}, token fetches {}), target {} (401s {}, token fetches {})",
        s.rotations,
        s.unauthorized,
        src_tokens.fetches.load(Ordering::Relaxed),
        d.rotations,
        d.unauthorized,
        dst_tokens.fetches.load(Ordering::Relaxed)
    );
    report.unwrap();
    assert_same_image(&src, "app:v1", &dst, "app:v1");
    // Tokens really expired mid-copy on both sides, and old ones were refused.
    for (side, st) in [("source", &s), ("target", &d)] {
        assert!(st.rotations >= 2 && st.stale_tokens >= 1, "{side}: {st:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_token_expires_as_the_first_blob_upload_arrives_when_copying_then_that_blob_is_sent_again_with_fresh_credentials(
) {
    let (src, dst) = (Registry::start(SRC_ACCOUNT), Registry::start(DST_ACCOUNT));
    push_image(&src, &ImageSpec::single(&[300 << 10]), "app", "v1");
    let proxy = FaultProxy::start(
        &dst,
        ProxyOptions {
            tokens: Some(TokenRotation::AtFirstBlobUpload),
            ..ProxyOptions::default()
        },
    );
    let (to, tokens) = with_tokens(&proxy, "app");

    let report = copy(&at(&src, "app"), &tag("v1"), &to, &["v1"]).await;

    let stats = proxy.stats();
    // The first blob PUT met the expired token and was refused with 401
    // (never forwarded); the client cannot replay a stream, so that blob
    // started over with new credentials. Each blob then arrived exactly once.
    assert_eq!(stats.rotations, 1, "{stats:?}");
    assert!(stats.stale_tokens >= 1, "{stats:?}");
    let report = report.unwrap();
    assert_eq!(report.blobs_uploaded, 2, "{report:?}");
    assert_eq!(stats.blob_puts_forwarded, 2, "{stats:?}");
    assert!(tokens.fetches.load(Ordering::Relaxed) >= 2);
    assert_same_image(&src, "app:v1", &dst, "app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_registry_that_keeps_throttling_with_retry_after_when_requesting_then_each_retry_waits_as_asked_and_the_error_is_retryable(
) {
    let reg = Registry::start(DST_ACCOUNT);
    let proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            rates: FaultRates {
                throttle: 1.0,
                ..FaultRates::default()
            },
            retry_after_secs: 1,
            ..ProxyOptions::default()
        },
    );
    // Throttling is waited out by time, not counted: 2.5 s of budget fits
    // two waits of Retry-After: 1, and 0.5 s fits none.
    let patient = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_total_wait: Duration::from_secs(5),
        max_throttle_wait: Duration::from_millis(2500),
        max_throttle_backoff: Duration::from_millis(20),
    };
    let hasty = RetryPolicy {
        max_total_wait: Duration::from_millis(500),
        max_throttle_wait: Duration::from_millis(500),
        ..patient.clone()
    };

    let started = Instant::now();
    let err = via(&proxy, &reg, "app", patient)
        .manifest_head(&tag("v1"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    // Through a front of its own: the rate limiter is per host, and the
    // patient client's 429s would slow this one's first request too.
    let hasty_proxy = FaultProxy::start(
        &reg,
        ProxyOptions {
            rates: FaultRates {
                throttle: 1.0,
                ..FaultRates::default()
            },
            retry_after_secs: 1,
            ..ProxyOptions::default()
        },
    );
    let started = Instant::now();
    let err_hasty = via(&hasty_proxy, &reg, "app", hasty)
        .manifest_head(&tag("v1"))
        .await
        .unwrap_err();
    let gave_up_after = started.elapsed();

    // 3 attempts, 2 waits of Retry-After: 1 (the backoff alone is 20 ms).
    assert!(
        matches!(err, RegistryError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    // A wait the budget cannot afford ends the retries at once.
    assert!(matches!(err_hasty, RegistryError::Throttled { .. }));
    assert!(
        gave_up_after < Duration::from_millis(500),
        "{gave_up_after:?}"
    );
    assert_eq!(proxy.stats().throttled + hasty_proxy.stats().throttled, 4);
}
