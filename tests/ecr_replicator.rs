//! The image replicator against ECR's own behaviours, reproduced by the
//! rig's front where docker-registry and moto differ from ECR: registry
//! tokens that expire on a clock (403, not 401), repositories that only
//! ECR's creation templates create, and a target that stops answering
//! before the invocation's deadline.

mod common;

use std::time::{Duration, Instant};

use common::events::{apps_mapping, invoke, push_event};
use common::push_image;
use common::stage::{role, Stage, REGION, SOURCE, TARGET};
use image_replicator::handler::HandlerError;
use rig::{assert_same_image, ImageSpec, TokenRotation};
use serde_json::{json, Value};

fn coeus(create_repository: Value) -> Value {
    let mut rule = json!({
        "name": "kuali-coeus", "match": {"exact": "kuali-coeus"},
        "destinations": [{"account": TARGET, "region": REGION, "role_arn": role(TARGET),
                          "external_id": "kuali-sync", "repository": "coeus"}]
    });
    if !create_repository.is_null() {
        rule["create_repository"] = create_repository;
    }
    json!({"version": 1, "rules": [rule]})
}

/// The source, and the target behind an ECR front with `front`'s options.
fn ecr_stage(front: rig::ProxyOptions) -> Stage {
    Stage::builder()
        .accounts(&[SOURCE, TARGET])
        .ecr_front(front)
        .build()
}

fn small() -> ImageSpec {
    ImageSpec::single(&[64 << 10, 32 << 10])
}

/// A push of `kuali-coeus:v1` handled by a rule that leaves creation to the
/// registry, whose creation templates (`CREATE_ON_PUSH`) have these prefixes.
async fn replicate_with_templates(prefixes: &[&str]) -> (Stage, Result<Value, HandlerError>) {
    let stage = ecr_stage(rig::ProxyOptions {
        create_on_push: prefixes.iter().map(|p| p.to_string()).collect(),
        ..rig::ProxyOptions::ecr()
    });
    let image = push_image(stage.source(), &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!("registry"))).await;
    let event = push_event("kuali-coeus", &image.layout.digest, "v1");
    let out = invoke(&r, &c, event).await;
    (stage, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_warm_replicator_whose_registry_token_expires_between_two_events_when_the_second_arrives_then_it_fetches_a_new_token_and_replicates(
) {
    // Tokens live 3 s here (12 h in ECR); the AWS front hands out the
    // front's own tokens, since moto's never expire.
    let stage = Stage::builder()
        .accounts(&[SOURCE, TARGET])
        .ecr_front(rig::ProxyOptions {
            tokens: Some(TokenRotation::Expiring {
                lifetime: Duration::from_secs(3),
            }),
            ..rig::ProxyOptions::ecr()
        })
        .front_tokens()
        .build();
    let first = push_image(stage.source(), &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!(true))).await;
    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &first.layout.digest, "v1"),
    )
    .await
    .expect("first event");
    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");

    // The same container, after the token's lifetime.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let second = push_image(stage.source(), &small().with_seed(2), "kuali-coeus", "v2");
    let out = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &second.layout.digest, "v2"),
    )
    .await
    .expect("second event after the token expired");

    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert_same_image(stage.source(), "kuali-coeus:v2", stage.target(), "coeus:v2");
    let stats = stage.front().stats();
    assert!(
        stats.expired_tokens >= 1,
        "the old token met ECR's 403: {stats}"
    );
    let issued = stage.aws().authorization_tokens_answered();
    assert!(issued >= 2, "a new token was fetched: {issued}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_rule_that_leaves_creation_to_the_registry_and_a_create_on_push_template_when_replicating_then_ecr_creates_the_repository_not_us(
) {
    let (stage, out) = replicate_with_templates(&[""]).await;
    let out = out.expect("replicated");

    assert_eq!(out["destinations"][0]["outcome"], "replicated", "{out}");
    assert_eq!(out["destinations"][0]["created_repository"], false, "{out}");
    // Had the replicator created it, the front would have had nothing to create.
    assert_eq!(stage.front().stats().created_on_push, 1);
    assert!(stage.exists_in_target("coeus"));
    assert_same_image(stage.source(), "kuali-coeus:v1", stage.target(), "coeus:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_rule_that_leaves_creation_to_the_registry_and_no_template_covering_the_name_when_replicating_then_a_permanent_error_names_create_on_push(
) {
    let (stage, err) = replicate_with_templates(&["other"]).await;
    let err = err.unwrap_err();

    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.starts_with("permanent:"), "{text}");
    assert!(text.contains("CREATE_ON_PUSH"), "{text}");
    assert!(!stage.exists_in_target("coeus"), "nobody created it");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_target_that_stops_answering_when_the_invocation_deadline_nears_then_the_copy_ends_before_it_with_a_transient_outcome(
) {
    // Every answer of the target waits a minute: a registry that has stalled.
    let stage = ecr_stage(rig::ProxyOptions {
        rates: rig::FaultRates {
            slow: 1.0,
            ..rig::FaultRates::default()
        },
        slow_delay: Duration::from_secs(240),
        ..rig::ProxyOptions::ecr()
    });
    let image = push_image(stage.source(), &small(), "kuali-coeus", "v1");
    let (r, c) = stage.replicator(&coeus(json!(true))).await;
    let deadline = Instant::now() + Duration::from_secs(4);

    let logs = common::capture_all_logs();

    let started = Instant::now();
    let err = image_replicator::handler::handle_until(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
        Some(deadline),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    let logs = logs.text();

    let text = err.to_string();
    assert!(err.is_retryable(), "{text}");
    assert!(text.starts_with("transient:"), "{text}");
    assert!(text.contains("deadline"), "{text}");
    assert!(
        took < Duration::from_secs(6),
        "ran {took:?} for a 4 s deadline"
    );
    assert!(
        logs.contains("replication failed"),
        "the outcome line: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_twenty_replicator_processes_and_a_put_image_quota_of_10_per_second_when_each_gets_a_push_then_all_replicate_digest_identical(
) {
    // Separate processes of the real binary, each with its own runtime API,
    // as Lambda runs concurrent invocations in separate containers: nothing
    // (no rate limiter) is shared but the target's quota.
    const N: usize = 20;
    let stage = ecr_stage(rig::ProxyOptions {
        quotas: rig::EcrQuotas {
            put_image: Some(10.0),
            ..rig::EcrQuotas::default()
        },
        ..rig::ProxyOptions::ecr()
    });
    let spec = ImageSpec::multi_arch(
        &[
            rig::Platform::new("linux", "amd64"),
            rig::Platform::new("linux", "arm64"),
            rig::Platform::new("linux", "s390x"),
        ],
        &[96 << 10, 48 << 10],
        1,
    );
    let image = push_image(stage.source(), &spec, "app-00", "v1");
    for i in 1..N {
        rig::skopeo_copy(
            stage.source(),
            "app-00:v1",
            stage.source(),
            &format!("app-{i:02}:v1"),
        )
        .expect("source copy");
    }
    let mapping = apps_mapping();
    let mut env = stage.replicator_env(&[("MAPPING_JSON", &mapping.to_string())]);
    env.extend([
        ("AWS_ENDPOINT_URL".to_string(), stage.aws_url()),
        ("AWS_ACCESS_KEY_ID".into(), "AKIDTESTONLY".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test-secret-key".into()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), "image-replicator".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "1024".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        ("RUST_LOG".into(), "warn".into()),
    ]);
    let binary = common::workspace_binary("image-replicator");

    let started = Instant::now();
    let containers: Vec<(rig::RuntimeApi, std::process::Child)> = (0..N)
        .map(|i| {
            let api = rig::RuntimeApi::start();
            let event = push_event(&format!("app-{i:02}"), &image.layout.digest, "v1");
            api.invoke(event.to_string().as_bytes(), Duration::from_secs(300));
            let child = std::process::Command::new(&binary)
                .envs(&env)
                .env("AWS_LAMBDA_RUNTIME_API", api.host())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starting the replicator");
            (api, child)
        })
        .collect();
    let results: Vec<Vec<rig::InvocationResult>> = containers
        .iter()
        .map(|(api, _)| api.wait_for(1, Duration::from_secs(240)))
        .collect();
    let wall = started.elapsed();
    let mut stderr = Vec::new();
    for (api, mut child) in containers {
        let _ = child.kill();
        let out = child.wait_with_output().expect("replicator output");
        stderr.push((
            api.init_errors(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }

    let stats = stage.front().stats();
    eprintln!(
        "replicator-quota: processes={N} wall_s={:.2} puts={} throttled={} floor_s={:.1}",
        wall.as_secs_f64(),
        stats.manifest_puts_forwarded,
        stats.put_image_throttled,
        stats.manifest_puts_forwarded as f64 / 10.0
    );
    for (i, r) in results.iter().enumerate() {
        let answer = r
            .first()
            .unwrap_or_else(|| panic!("app-{i:02}: no answer; {:?}", stderr[i]));
        assert!(
            answer.ok,
            "app-{i:02} failed: {}; {:?}",
            answer.body, stderr[i]
        );
        let body: Value = serde_json::from_str(&answer.body).expect("json answer");
        assert_eq!(
            body["destinations"][0]["outcome"], "replicated",
            "app-{i:02}: {body}"
        );
    }
    for i in 0..N {
        assert_eq!(
            rig::skopeo_digest(stage.target(), &format!("mirror/{i:02}:v1")).unwrap(),
            image.layout.digest,
            "mirror/{i:02}"
        );
    }
    assert_same_image(stage.source(), "app-00:v1", stage.target(), "mirror/19:v1");
    assert!(
        stats.put_image_throttled > 0,
        "the quota was reached: {stats}"
    );
    // 3 children by digest and the index by its tag, once each.
    assert_eq!(stats.manifest_puts_forwarded, 4 * N as u64, "{stats}");
}
