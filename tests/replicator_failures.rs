//! The image replicator when things go wrong: a target repository missing,
//! a bad mapping in SSM, events to ignore, a malformed event, secrets kept
//! out of debug logs, two invocations racing to create one repository, an
//! unreachable target. Against moto and a registry per account.

mod common;

use common::{blob_puts, push_image};
use image_replicator::handler::HandlerError;
use rig::{assert_same_image, ImageSpec};
use serde_json::json;

use common::events::{invoke, kuali_mapping, push_event};
use common::stage::{Stage, OTHER, REGION, SOURCE, TARGET};

#[tokio::test(flavor = "multi_thread")]
async fn given_a_missing_target_repository_and_no_create_when_pushed_then_a_clear_permanent_error()
{
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]),
        "kuali-coeus",
        "v1",
    );
    let mut mapping = kuali_mapping();
    mapping["rules"][0]
        .as_object_mut()
        .unwrap()
        .remove("create_repository");
    let (r, c) = stage.replicator(&mapping).await;
    let mark = stage.target().request_mark();

    let err = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap_err();

    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with("permanent:") && text.contains("coeus") && text.contains("does not exist"),
        "{text}"
    );
    assert_eq!(blob_puts(&stage.target().requests_since(mark)), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_mapping_in_ssm_when_invalid_then_the_invocation_fails_naming_the_field_and_when_fixed_it_replicates(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]),
        "kuali-coeus",
        "v1",
    );
    let ssm = aws_sdk_ssm::Client::new(&stage.sdk().await);
    let mut bad = kuali_mapping();
    bad["rules"][0]["destinations"][0]["account"] = json!("2222");
    ssm.put_parameter()
        .name("/ecr-bridge/mapping")
        .value(bad.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let (r, c) = stage
        .replicator_with_env(&[
            ("MAPPING_PARAMETER", "/ecr-bridge/mapping"),
            ("MAPPING_TTL_SECONDS", "0"),
        ])
        .await;
    let e = push_event("kuali-coeus", &image.layout.digest, "v1");

    let err = invoke(&r, &c, e.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("rules[0].destinations[0].account"),
        "{err}"
    );
    assert!(!err.is_retryable());

    ssm.put_parameter()
        .name("/ecr-bridge/mapping")
        .value(kuali_mapping().to_string())
        .overwrite(true)
        .send()
        .await
        .unwrap();
    invoke(&r, &c, e).await.unwrap();
    assert_same_image(stage.source(), "kuali-coeus:v1", stage.target(), "coeus:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_failed_push_or_another_ecr_detail_type_or_an_unmapped_repository_then_ignored_without_error(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let (r, c) = stage.replicator(&kuali_mapping()).await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mark = stage.target().request_mark();

    let failure = invoke(
        &r,
        &c,
        serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../events/image-push-failure.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let scan = invoke(
        &r,
        &c,
        serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../events/image-scan.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let unmapped = invoke(&r, &c, push_event("somebody-else", &digest, "v1"))
        .await
        .unwrap();

    assert_eq!(failure["result"], "ignored");
    assert_eq!(scan["result"], "ignored");
    assert_eq!(unmapped["result"], "no_rule");
    assert!(stage.target().requests_since(mark).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_malformed_event_when_invoked_then_a_permanent_error_naming_the_field() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let (r, c) = stage.replicator(&kuali_mapping()).await;
    let mut e = push_event("kuali-coeus", "sha256:123", "v1");

    let err = invoke(&r, &c, e.clone()).await.unwrap_err();
    assert!(matches!(err, HandlerError::InvalidEvent(_)));
    assert!(err.to_string().contains("detail.image-digest"), "{err}");

    e["detail"]["image-digest"] = json!(format!("sha256:{}", "ab".repeat(32)));
    e["account"] = json!(42);
    let err = invoke(&r, &c, e).await.unwrap_err();
    assert!(err.to_string().starts_with("permanent:"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_debug_logging_when_replicating_across_accounts_then_no_credential_or_token_appears_in_the_logs(
) {
    let captured = common::capture_all_logs();
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[20_000]),
        "kuali-coeus",
        "v1",
    );
    let (r, c) = stage.replicator(&kuali_mapping()).await;

    invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap();

    let logs = captured.text();
    assert!(logs.contains("replication"), "the outcome line is logged");
    assert!(
        logs.contains("registry request"),
        "requests are traced at debug"
    );
    let secrets = [
        stage.source().password(),
        stage.target().password(),
        "test-secret-key".to_string(),
        // base64 of "AWS:<password>", the registry Authorization header's payload
        stage
            .target()
            .auth_header()
            .trim_start_matches("Basic ")
            .to_string(),
        "FQoGZXIvYXdzE".to_string(), // moto's session-token prefix
    ];
    for s in secrets {
        if let Some(i) = logs.find(&s) {
            let start = logs[..i].rfind('\n').map_or(0, |n| n + 1);
            panic!(
                "secret {s:?} leaked into the logs: {}",
                &logs[start..(i + 200).min(logs.len())]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn given_two_invocations_racing_to_create_the_same_new_repository_then_both_succeed() {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[50_000]),
        "kuali-coeus",
        "v1",
    );
    // Two containers: separate caches, so both see the repository missing.
    let (r1, c1) = stage.replicator(&kuali_mapping()).await;
    let (r2, c2) = stage.replicator(&kuali_mapping()).await;
    let e = push_event("kuali-coeus", &image.layout.digest, "v1");

    let (a, b) = tokio::join!(invoke(&r1, &c1, e.clone()), invoke(&r2, &c2, e));

    let (a, b) = (a.unwrap(), b.unwrap());
    let created = [&a, &b]
        .iter()
        .filter(|o| o["destinations"][0]["created_repository"] == json!(true))
        .count();
    // One of them created it. Not "exactly one": moto's CreateRepository is
    // check-then-insert on a threaded server, so under load both calls can
    // succeed there (ECR's is atomic, and the loser's
    // RepositoryAlreadyExistsException counts as "existed").
    assert!(created >= 1, "one invocation created it: {a} {b}");
    assert_same_image(stage.source(), "kuali-coeus:v1", stage.target(), "coeus:v1");
    let ecr = stage.ecr_in(TARGET).await;
    assert_eq!(
        ecr.describe_repositories()
            .send()
            .await
            .unwrap()
            .repositories()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_target_registry_is_unreachable_when_pushed_then_a_transient_error_lets_lambda_retry(
) {
    let stage = Stage::builder().accounts(&[SOURCE, TARGET, OTHER]).build();
    let image = push_image(
        stage.source(),
        &ImageSpec::single(&[10_000]),
        "kuali-coeus",
        "v1",
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoints = format!(
        "{},{TARGET}.dkr.ecr.{REGION}.amazonaws.com=http://127.0.0.1:{closed}",
        stage.endpoints()
    );
    let (r, c) = stage
        .replicator_with_env(&[
            ("MAPPING_JSON", &kuali_mapping().to_string()),
            ("REGISTRY_ENDPOINTS", &endpoints),
        ])
        .await;

    let started = std::time::Instant::now();
    let err = invoke(
        &r,
        &c,
        push_event("kuali-coeus", &image.layout.digest, "v1"),
    )
    .await
    .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().starts_with("transient:"), "{err}");
    assert!(
        err.to_string().contains("connection refused by 127.0.0.1:"),
        "{err}"
    );
    let diag: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diag.error_type, "TransientReplicationFailure");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded by the retry budget"
    );
}
