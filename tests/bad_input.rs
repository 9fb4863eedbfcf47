//! Bad input: malformed and hostile payloads for both functions, mapping
//! configs and repository policies, kept as files in `tests/corpus/` (also
//! the seeds of the fuzz targets in `fuzz/`). Every file's outcome is
//! written down in `tests/corpus/expected.json` — a specific error with the
//! words it must contain (naming the field), or a clean ignore — and every
//! file must have one, so nothing passes by accident. None may panic.
//! Huge strings are generated here rather than stored. Whole stream batches
//! with every kind of bad record go through the access-sync handler against
//! moto, to show that the good records of a batch are still handled.

mod access_rig;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use access_rig::{repo, row, AccessStage};
use access_sync::event::{EventError as StreamEventError, Invocation};
use access_sync::handler::{self, Handled};
use ecr_bridge::access::{merge_policy, AccountId, PolicyChange, PolicySpec};
use ecr_bridge::mapping::{ConfigError, MappingConfig};
use ecr_bridge_aws::access_sync::Outcome;
use image_replicator::event::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

const U1: &str = "user1@username.com";
const JANE: &str = "jane-doe@x.io";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    /// `invalid_event`, `ignored`, `queued_item_error` (an SQS work item refused
    /// on its own), `stream`, `invalid_config`, `policy_error`, `rewritten`.
    kind: String,
    /// Words the error (or ignore reason, or malformed records' errors) must contain.
    #[serde(default)]
    contains: Vec<String>,
    /// For `stream`: records that name a user, and records that are malformed.
    changes: Option<usize>,
    malformed: Option<usize>,
    /// The field the error must name (type errors: serde's path, e.g. `detail.image-tag`).
    should_name: Option<String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn expected() -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

/// `(name relative to tests/corpus, bytes)` of every file under `dir`, sorted.
fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir().join(dir))
        .unwrap_or_else(|e| panic!("tests/corpus/{dir}: {e}"))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    out.sort();
    out
}

fn json_of(name: &str, bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn text_of(name: &str, bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"))
}

fn expectation<'a>(all: &'a BTreeMap<String, Expected>, name: &str) -> &'a Expected {
    all.get(name)
        .unwrap_or_else(|| panic!("{name} has no entry in tests/corpus/expected.json"))
}

/// `None` when `text` has every expected word; else what is wrong.
fn missing_words(name: &str, text: &str, words: &[String]) -> Option<String> {
    let missing: Vec<&String> = words
        .iter()
        .filter(|w| !text.contains(w.as_str()))
        .collect();
    (!missing.is_empty()).then(|| format!("{name}: {text:?} lacks {missing:?}"))
}

/// Runs `f`, turning a panic into a failure that names the input.
fn no_panic<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let message = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{name}: PANIC {message}")
    })
}

fn assert_all_as_expected(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} unexpected outcomes:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn given_the_corpus_then_every_file_has_an_expected_outcome_and_every_outcome_a_file() {
    let all = expected();
    let files: BTreeSet<String> = ["image-replicator", "access-sync", "mapping", "policy"]
        .iter()
        .flat_map(|d| corpus(d))
        .map(|(name, _)| name)
        .collect();
    let listed: BTreeSet<String> = all.keys().cloned().collect();
    assert_eq!(
        files.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "files without an expected outcome"
    );
    assert_eq!(
        listed.difference(&files).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "expected outcomes without a file"
    );
    let count = |dir: &str| files.iter().filter(|f| f.starts_with(dir)).count();
    assert!(count("image-replicator/") >= 20 && count("access-sync/") >= 20);
    assert!(count("image-replicator/") + count("access-sync/") >= 40);
    for (name, e) in &all {
        let known = [
            "invalid_event",
            "ignored",
            "queued_item_error",
            "stream",
            "invalid_config",
            "policy_error",
            "rewritten",
        ];
        assert!(known.contains(&e.kind.as_str()), "{name}: kind {}", e.kind);
        // An error or ignore must be pinned down by what it says.
        if matches!(
            e.kind.as_str(),
            "invalid_event" | "ignored" | "queued_item_error" | "invalid_config" | "policy_error"
        ) {
            assert!(!e.contains.is_empty(), "{name}: say what the message names");
        }
        if e.kind == "stream" {
            assert!(e.changes.is_some() && e.malformed.is_some(), "{name}");
        }
    }
}

// ---------------------------------------------------------------------------
// The image replicator

/// What the replicator's parser made of a payload, as an expected kind.
fn replicator_outcome(name: &str, payload: &Value) -> Result<(String, String), String> {
    match no_panic(name, || image_replicator::event::parse(payload))? {
        Ok(Incoming::Ignored(reason)) => Ok(("ignored".into(), reason)),
        // An SQS batch: a bad work item fails only itself.
        Ok(Incoming::Queued(items)) if items.iter().any(|i| i.body.is_err()) => {
            let errors: Vec<String> = items
                .iter()
                .filter_map(|i| i.body.as_ref().err().map(|e| e.to_string()))
                .collect();
            Ok(("queued_item_error".into(), errors.join(" | ")))
        }
        Ok(other) => Ok(("accepted".into(), format!("{other:?}"))),
        Err(e) => Ok(("invalid_event".into(), e.to_string())),
    }
}

#[test]
fn given_every_malformed_or_hostile_replicator_payload_when_parsed_then_a_specific_error_or_a_clean_ignore(
) {
    let all = expected();
    let files = corpus("image-replicator");
    let mut failures = Vec::new();
    for (name, bytes) in &files {
        let want = expectation(&all, name);
        let payload = json_of(name, bytes);
        match replicator_outcome(name, &payload) {
            Err(panic) => failures.push(panic),
            Ok((kind, message)) => {
                if kind != want.kind {
                    failures.push(format!(
                        "{name}: expected {}, got {kind}: {message}",
                        want.kind
                    ));
                } else if let Some(f) = missing_words(name, &message, &want.contains) {
                    failures.push(f);
                } else if kind == "invalid_event" && message.len() > 1000 {
                    failures.push(format!("{name}: an error of {} bytes", message.len()));
                }
                if let Some(field) = &want.should_name {
                    if !message.contains(field.as_str()) {
                        failures.push(format!("{name}: {message:?} does not name {field}"));
                    }
                }
            }
        }
    }
    assert_all_as_expected(failures);
}

#[test]
fn given_replicator_events_with_huge_strings_when_parsed_then_short_specific_errors() {
    let huge = "a".repeat(1_000_000);
    let base = json_of(
        "image-push-tagged.json",
        &std::fs::read(corpus_dir().join("../../events/image-push-tagged.json")).unwrap(),
    );
    let cases: Vec<(&str, &[&str], &str)> = vec![
        (
            "repository-name",
            &["detail", "repository-name"],
            "detail.repository-name",
        ),
        ("image-tag", &["detail", "image-tag"], "detail.image-tag"),
        (
            "image-digest",
            &["detail", "image-digest"],
            "detail.image-digest",
        ),
        ("account", &["account"], "account"),
        ("region", &["region"], "region"),
    ];
    for (label, path, field) in cases {
        let mut e = base.clone();
        let mut slot = &mut e;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = json!(huge);
        let (kind, message) = replicator_outcome(label, &e).unwrap();
        assert_eq!(kind, "invalid_event", "{label}: {message:.300}");
        assert!(message.contains(field), "{label}: {message:.300}");
        assert!(message.len() < 1000, "{label}: {} bytes", message.len());
    }
    // A huge detail-type is another event, ignored (not an error).
    let mut e = base.clone();
    e["detail-type"] = json!(huge);
    assert_eq!(replicator_outcome("detail-type", &e).unwrap().0, "ignored");
    // A huge wrong type in the detail: a short error.
    let mut e = base;
    e["detail"]["image-tag"] = json!(vec![huge.as_str(); 3]);
    let (kind, message) = replicator_outcome("tag list", &e).unwrap();
    assert_eq!(kind, "invalid_event");
    assert!(message.len() < 1000, "{} bytes", message.len());
}

/// `REGISTRY_ENDPOINTS` is the only way to send registry traffic over plain
/// HTTP; off loopback it must stop the function at start-up, saying which
/// variable is wrong.
#[test]
fn given_registry_endpoints_with_plain_http_to_a_non_loopback_host_when_the_replicator_starts_then_refused_naming_the_variable(
) {
    let mapping = r#"{"rules":[{"match":{"exact":"kuali-coeus"},"destinations":[{"account":"222222222222","region":"us-east-1","repository":"coeus"}]}]}"#;
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let config = |endpoints: &str| {
        image_replicator::config::Config::from_env(&ecr_bridge_aws::env::vars_from(&[
            ("MAPPING_JSON", mapping),
            ("REGISTRY_ENDPOINTS", endpoints),
        ]))
    };
    for url in [
        "http://10.0.0.5:5000",
        "http://192.168.1.10",
        "http://registry.example.com",
        "http://127.0.0.1.nip.io:5000",
        "http://[fe80::1]:5000",
        "http://0.0.0.0:5000",
    ] {
        let e = config(&format!(
            "{host}=http://127.0.0.1:5000,222222222222.dkr.ecr.us-east-1.amazonaws.com={url}"
        ))
        .expect_err(url);
        let message = e.to_string();
        assert_eq!(e.variable, "REGISTRY_ENDPOINTS", "{message}");
        assert!(message.starts_with("REGISTRY_ENDPOINTS: "), "{message}");
        assert!(message.contains("loopback"), "{url}: {message}");
    }
    for ok in [
        "http://127.0.0.1:5000",
        "http://localhost:5000",
        "http://[::1]:5000",
        "https://registry.example.com",
    ] {
        assert!(config(&format!("{host}={ok}")).is_ok(), "{ok}");
    }

    // And the real binary refuses to start with it.
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("image-replicator");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (make test does)",
        bin.display()
    );
    let out = std::process::Command::new(&bin)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MAPPING_JSON", mapping)
        .env("REGISTRY_ENDPOINTS", format!("{host}=http://10.0.0.5:5000"))
        .env("AWS_REGION", "us-east-1")
        // Nothing listens here: the function must stop before it gets that far.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "image-replicator")
        .output()
        .expect("run image-replicator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("REGISTRY_ENDPOINTS") && stderr.contains("loopback"),
        "stderr: {stderr} stdout: {stdout}"
    );
}

// ---------------------------------------------------------------------------
// Access sync

/// What access sync's parser made of a payload: kind, message, and for a
/// stream the numbers of changes and malformed records.
fn access_outcome(name: &str, payload: &Value) -> Result<(String, String, usize, usize), String> {
    match no_panic(name, || access_sync::event::parse(payload, "user_id"))? {
        Ok(Invocation::Stream {
            changes, malformed, ..
        }) => {
            let errors: Vec<String> = malformed.iter().map(|m| m.error.to_string()).collect();
            Ok((
                "stream".into(),
                errors.join(" | "),
                changes.len(),
                malformed.len(),
            ))
        }
        Ok(other) => Ok(("accepted".into(), format!("{other:?}"), 0, 0)),
        Err(e) => Ok(("invalid_event".into(), e.to_string(), 0, 0)),
    }
}

#[test]
fn given_every_malformed_or_hostile_access_sync_payload_when_parsed_then_a_specific_error_or_the_bad_records_named(
) {
    let all = expected();
    let mut failures = Vec::new();
    for (name, bytes) in &corpus("access-sync") {
        let want = expectation(&all, name);
        let payload = json_of(name, bytes);
        match access_outcome(name, &payload) {
            Err(panic) => failures.push(panic),
            Ok((kind, message, changes, malformed)) => {
                if kind != want.kind {
                    failures.push(format!(
                        "{name}: expected {}, got {kind}: {message}",
                        want.kind
                    ));
                    continue;
                }
                if let Some(f) = missing_words(name, &message, &want.contains) {
                    failures.push(f);
                }
                if kind == "stream"
                    && (Some(changes), Some(malformed)) != (want.changes, want.malformed)
                {
                    failures.push(format!(
                        "{name}: {changes} changes and {malformed} malformed, expected {:?} and {:?}: {message}",
                        want.changes, want.malformed
                    ));
                }
            }
        }
    }
    assert_all_as_expected(failures);
}

#[test]
fn given_access_sync_payloads_with_huge_strings_when_parsed_then_no_panic_and_short_errors() {
    let huge = "x".repeat(1_000_000);
    // A huge user id names a user; the naming step refuses it later, shortly.
    let record = json!({"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {"Keys": {"user_id": {"S": huge}}}}]});
    let (kind, _, changes, malformed) = access_outcome("huge user", &record).unwrap();
    assert_eq!((kind.as_str(), changes, malformed), ("stream", 1, 0));
    let e = ecr_bridge::access::repository_name("nextflow-approved", &huge).unwrap_err();
    assert!(e.to_string().len() < 2000, "{} bytes", e.to_string().len());
    for (label, payload) in [
        (
            "event source",
            json!({"Records": [{"eventSource": huge, "dynamodb": {}}]}),
        ),
        (
            "attribute type",
            json!({"Records": [{"dynamodb": {"Keys": {"user_id": {huge.clone(): "1"}}}}]}),
        ),
        ("unknown key", json!({huge.clone(): 1})),
        ("reconcile option", json!({"reconcile": {huge.clone(): 1}})),
        (
            "detail-type",
            json!({"source": "aws.events", "detail-type": huge}),
        ),
    ] {
        let (_, message, _, _) = access_outcome(label, &payload).unwrap();
        assert!(!message.is_empty(), "{label}");
        assert!(message.len() < 1000, "{label}: {} bytes", message.len());
    }
    // Many records, all bad: each one named, none lost.
    let many = json!({"Records": vec![json!({"dynamodb": {}}); 10_000]});
    let (_, _, changes, malformed) = access_outcome("many", &many).unwrap();
    assert_eq!((changes, malformed), (0, 10_000));
}

/// Every stream record of the corpus in one batch, with good records around
/// them, through the handler against moto: the good users are reconciled
/// from the table (granted), the bad records are counted and not retried,
/// and nothing is handed back to Lambda.
#[tokio::test(flavor = "multi_thread")]
async fn given_a_stream_batch_with_every_kind_of_bad_record_when_handled_then_the_good_records_are_still_processed(
) {
    let all = expected();
    let mut stage = AccessStage::new().await;
    for user in [U1, JANE] {
        stage.create_repository(&repo(user)).await;
    }
    stage.put(row(U1, "ws-0001", "111111111111")).await;
    // A row with an invalid account id: skipped, the user's other rows still grant.
    stage.put(row(U1, "ws-bad", "12345")).await;
    stage.put(row(JANE, "ws-0400", "333333333333")).await;
    // Drain the stream: this test builds its own batch.
    let _ = stage.next_batch().await;
    let (sync, config) = stage.sync(&[]).await;

    let good = |user: &str, seq: &str| {
        json!({"eventName": "INSERT", "eventSource": "aws:dynamodb",
               "dynamodb": {"Keys": {"user_id": {"S": user}, "bmh_workspace_id": {"S": "ws"}},
                            "SequenceNumber": seq}})
    };
    let mut records = vec![good(JANE, "900")];
    let (mut want_changes, mut want_malformed) = (1, 0);
    for (name, bytes) in corpus("access-sync") {
        let want = expectation(&all, &name);
        if want.kind != "stream" {
            continue;
        }
        let batch = json_of(&name, &bytes);
        records.extend(batch["Records"].as_array().unwrap().iter().cloned());
        want_changes += want.changes.unwrap();
        want_malformed += want.malformed.unwrap();
    }
    records.push(good(U1, "999"));
    want_changes += 1;
    assert!(
        want_malformed >= 15,
        "the corpus has every kind of bad record"
    );
    assert_eq!(want_changes + want_malformed, records.len());

    let handled = handler::handle_detailed(&sync, &config, json!({ "Records": records }))
        .await
        .expect("a stream batch never fails the invocation");

    let answer = handled.to_json();
    let Handled::Stream {
        report, malformed, ..
    } = handled
    else {
        panic!("expected a stream batch")
    };
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "bad records are never retried"
    );
    assert_eq!(malformed, want_malformed);
    let users: usize = report.reports.iter().map(|r| r.users.len()).sum();
    assert!(users >= 3, "{:?}", report.reports);
    assert_eq!(stage.granted(&repo(U1)).await, ["111111111111"]);
    assert_eq!(stage.granted(&repo(JANE)).await, ["333333333333"]);
    for user in [U1, JANE] {
        let r = report
            .reports
            .iter()
            .find(|r| r.users.iter().any(|u| u == user))
            .unwrap();
        assert_eq!(r.outcome, Outcome::Granted, "{user}: {r:?}");
    }
    assert_eq!(report.tally.failed, 0, "{:?}", report.reports);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_payloads_that_are_no_event_when_handled_then_a_permanent_invalid_event_error() {
    let stage = AccessStage::new().await;
    let (sync, config) = stage.sync(&[]).await;
    let all = expected();
    for (name, bytes) in corpus("access-sync") {
        if expectation(&all, &name).kind != "invalid_event" {
            continue;
        }
        let e = handler::handle(&sync, &config, json_of(&name, &bytes))
            .await
            .expect_err(&name);
        assert!(
            matches!(
                e,
                handler::HandlerError::InvalidEvent(
                    StreamEventError::Shape(_)
                        | StreamEventError::Unrecognised(_)
                        | StreamEventError::Reconcile(_)
                )
            ),
            "{name}: {e}"
        );
        assert!(e.to_string().starts_with("permanent: "), "{name}: {e}");
        let diagnostic: lambda_runtime::Diagnostic = e.into();
        assert_eq!(diagnostic.error_type, "InvalidEvent", "{name}");
    }
}

// ---------------------------------------------------------------------------
// Mapping configs

#[test]
fn given_every_invalid_mapping_config_when_parsed_then_each_problem_is_named_by_its_path() {
    let all = expected();
    let mut failures = Vec::new();
    for (name, bytes) in &corpus("mapping") {
        let want = expectation(&all, name);
        let text = text_of(name, bytes);
        match no_panic(name, || MappingConfig::from_json(&text)) {
            Err(panic) => failures.push(panic),
            Ok(Ok(_)) => failures.push(format!("{name}: accepted, expected {}", want.kind)),
            Ok(Err(e)) => {
                if want.kind != "invalid_config" {
                    failures.push(format!("{name}: refused ({e}), expected {}", want.kind));
                } else if let Some(f) = missing_words(name, &e.to_string(), &want.contains) {
                    failures.push(f);
                }
            }
        }
    }
    assert_all_as_expected(failures);
}

#[test]
fn given_huge_or_deeply_nested_mapping_configs_when_parsed_then_refused_shortly() {
    let big = format!(r#"{{"rules":[],"x":"{}"}}"#, "a".repeat(300 * 1024));
    assert!(matches!(
        MappingConfig::from_json(&big),
        Err(ConfigError::TooLarge { .. })
    ));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = MappingConfig::from_json(&deep[..200_000]).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    let long_key = format!(
        r#"{{"rules":[{{"match":{{"exact":"a"}},"destinations":[{{"account":"222222222222","region":"us-east-1"}}],"{}":1}}]}}"#,
        "k".repeat(100_000)
    );
    let e = MappingConfig::from_json(&long_key).unwrap_err();
    assert!(e.to_string().contains("rules[0]"), "{e:.300}");
    assert!(e.to_string().len() < 2000, "{} bytes", e.to_string().len());
}

// ---------------------------------------------------------------------------
// Repository policies (what ECR returns as the current policy)

#[test]
fn given_current_policies_that_are_not_policy_documents_when_merging_then_refused_never_overwritten(
) {
    let all = expected();
    let accounts: BTreeSet<AccountId> = ["111111111111".parse().unwrap()].into();
    let spec = PolicySpec::default_for("aws");
    let mut failures = Vec::new();
    for (name, bytes) in &corpus("policy") {
        let want = expectation(&all, name);
        let text = text_of(name, bytes);
        match no_panic(name, || merge_policy(Some(&text), &accounts, &spec)) {
            Err(panic) => failures.push(panic),
            Ok(Err(e)) => {
                if want.kind != "policy_error" {
                    failures.push(format!("{name}: refused ({e}), expected {}", want.kind));
                } else if let Some(f) = missing_words(name, &e.to_string(), &want.contains) {
                    failures.push(f);
                }
            }
            Ok(Ok(p)) => {
                let PolicyChange::Put(new) = &p.change else {
                    failures.push(format!("{name}: {:?}, expected {}", p.change, want.kind));
                    continue;
                };
                if want.kind != "rewritten" {
                    failures.push(format!("{name}: rewritten, expected {}", want.kind));
                    continue;
                }
                // Ours is rewritten to exactly what the table grants, whatever it said.
                let doc: Value = serde_json::from_str(new).unwrap();
                let ours: Vec<&Value> = doc["Statement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["Sid"] == "AllowCrossAccountPull")
                    .collect();
                let wanted = json!({"Sid": "AllowCrossAccountPull", "Effect": "Allow",
                    "Principal": {"AWS": ["arn:aws:iam::111111111111:root"]},
                    "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]});
                if ours != [&wanted] {
                    failures.push(format!("{name}: our statement became {ours:?}"));
                }
                let again = merge_policy(Some(new), &accounts, &spec).unwrap();
                if again.change != PolicyChange::Keep {
                    failures.push(format!("{name}: not converged: {:?}", again.change));
                }
            }
        }
    }
    assert_all_as_expected(failures);
}
