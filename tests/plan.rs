//! `ecr-bridge plan` against moto's ECR: the repositories and images that
//! exist, and what the Kuali, prefix and regex example configs would do.

mod common;

use std::process::{Command, Output};

use common::cli_binary;
use rig::{build_layout, ImageSpec, Moto};
use serde_json::{json, Value};

const TARGET: &str = "222222222222";

/// Source repositories in moto's default account, each with tagged images.
async fn seed(moto: &Moto) {
    let sdk = common::moto_sdk(&moto.url(), "secret").await;
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let images: &[(&str, &[&str])] = &[
        ("kuali-coeus", &["2501.0001", "2501.0002", "wip-dirty"]),
        ("kuali-coeus-feature", &["f1"]),
        ("team-blue/api", &["v3"]),
        ("unrelated", &["latest"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (n, (repo, tags)) in images.iter().enumerate() {
        ecr.create_repository()
            .repository_name(*repo)
            .send()
            .await
            .unwrap();
        for (i, tag) in tags.iter().enumerate() {
            // Distinct, real manifests (moto keys images by their digest).
            let layout = build_layout(
                &dir.path().join(format!("{n}-{i}")),
                tag,
                &ImageSpec::single(&[1024]).with_seed((n * 10 + i) as u64 + 1),
            );
            ecr.put_image()
                .repository_name(*repo)
                .image_tag(*tag)
                .image_manifest(String::from_utf8(layout.manifest_bytes()).unwrap())
                .image_manifest_media_type(&layout.media_type)
                .send()
                .await
                .unwrap();
        }
    }
}

fn plan(moto: &Moto, config: &Value, extra: &[&str]) -> Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config.to_string()).unwrap();
    Command::new(cli_binary())
        .arg("plan")
        .arg("--mapping-file")
        .arg(file.path())
        .args(extra)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

fn plan_json(moto: &Moto, config: &Value) -> Value {
    let out = plan(moto, config, &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn dest(repository: &str) -> Value {
    json!([{"account": TARGET, "region": "us-east-1", "role_arn": format!("arn:aws:iam::{TARGET}:role/push"), "repository": repository}])
}

fn kuali() -> Value {
    json!({"rules": [
        {"name": "coeus", "match": {"exact": "kuali-coeus"}, "destinations": dest("coeus"),
         "tags": {"exclude": ["*-dirty"]}},
        {"name": "coeus-feature", "match": {"exact": "kuali-coeus-feature"}, "destinations": dest("coeus-feature")}
    ]})
}

fn by_repository<'a>(plan: &'a Value, repo: &str) -> &'a Value {
    plan["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repository"] == repo)
        .unwrap_or_else(|| panic!("{repo} not in {plan}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_kuali_config_when_planned_then_both_repositories_map_and_the_filter_drops_the_dirty_tag(
) {
    let moto = Moto::start();
    seed(&moto).await;

    let p = plan_json(&moto, &kuali());

    let coeus = by_repository(&p, "kuali-coeus");
    assert_eq!(coeus["destinations"][0]["repository"]["Ok"], "coeus");
    assert_eq!(
        (
            coeus["images"].as_u64(),
            coeus["images_replicated"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(coeus["tags_replicated"], 2);
    assert_eq!(
        by_repository(&p, "kuali-coeus-feature")["destinations"][0]["repository"]["Ok"],
        "coeus-feature"
    );
    let unmatched: Vec<&str> = p["unmatched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(unmatched, ["team-blue/api", "unrelated"]);
    assert_eq!(p["totals"]["images_replicated"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_prefix_config_when_planned_then_the_suffix_names_the_targets() {
    let moto = Moto::start();
    seed(&moto).await;
    let config = json!({"rules": [{"match": {"prefix": "kuali-"}, "destinations": dest("legacy/{suffix}")}]});

    let p = plan_json(&moto, &config);

    assert_eq!(
        by_repository(&p, "kuali-coeus")["destinations"][0]["repository"]["Ok"],
        "legacy/coeus"
    );
    assert_eq!(
        by_repository(&p, "kuali-coeus-feature")["destinations"][0]["repository"]["Ok"],
        "legacy/coeus-feature"
    );
    assert_eq!(p["totals"]["repositories_matched"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_regex_config_when_planned_then_capture_groups_name_the_target() {
    let moto = Moto::start();
    seed(&moto).await;
    let config = json!({"rules": [{"match": {"regex": "team-(?P<team>[a-z]+)/(.+)"}, "destinations": dest("mirror/{team}/{2}")}]});

    let p = plan_json(&moto, &config);

    assert_eq!(
        by_repository(&p, "team-blue/api")["destinations"][0]["repository"]["Ok"],
        "mirror/blue/api"
    );
    assert_eq!(p["totals"]["repositories_matched"], 1);
}

#[test]
fn given_one_repository_and_tag_when_explained_then_each_rule_says_why_without_aws_calls() {
    // No moto: a single decision needs no ECR call. The endpoint is a closed port to prove it.
    let config = kuali();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config.to_string()).unwrap();
    let run = |repo: &str, tag: &str| {
        Command::new(cli_binary())
            .args(["plan", "--mapping-file"])
            .arg(file.path())
            .args(["--repository", repo, "--tag", tag])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };

    let dirty = run("kuali-coeus", "wip-dirty");
    let feature = run("kuali-coeus-feature", "f1");

    assert!(dirty.status.success());
    let text = String::from_utf8_lossy(&dirty.stdout);
    assert!(
        text.contains("wip-dirty") && text.contains("*-dirty"),
        "{text}"
    );
    let text = String::from_utf8_lossy(&feature.stdout);
    assert!(
        text.contains("not matched") && text.contains("-> 222222222222/us-east-1/coeus-feature"),
        "{text}"
    );
}

#[test]
fn given_an_invalid_config_when_planned_then_it_exits_non_zero_naming_the_field() {
    let mut config = kuali();
    config["rules"][1]["destinations"][0]["account"] = json!("22");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config.to_string()).unwrap();

    let out = Command::new(cli_binary())
        .args(["plan", "--mapping-file"])
        .arg(file.path())
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules[1].destinations[0].account"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_config_in_an_ssm_parameter_when_planned_then_it_is_read_from_there_and_a_missing_or_invalid_one_is_named(
) {
    let moto = Moto::start();
    seed(&moto).await;
    let ssm = aws_sdk_ssm::Client::new(&common::moto_sdk(&moto.url(), "secret").await);
    let put = |name: &'static str, value: String| {
        let ssm = ssm.clone();
        async move {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .expect("put_parameter in moto")
        }
    };
    put("/ecr-bridge/mapping", kuali().to_string()).await;
    let mut invalid = kuali();
    invalid["rules"][0]["destinations"][0]["account"] = json!("22");
    put("/ecr-bridge/invalid", invalid.to_string()).await;
    let plan_parameter = |name: &str| {
        Command::new(cli_binary())
            .args(["plan", "--json", "--mapping-parameter", name])
            .env("AWS_ENDPOINT_URL", moto.url())
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };

    let ok = plan_parameter("/ecr-bridge/mapping");
    let missing = plan_parameter("/ecr-bridge/nothing");
    let bad = plan_parameter("/ecr-bridge/invalid");

    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let p: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(
        p["totals"]["images_replicated"], 3,
        "the same plan as from a file"
    );
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("/ecr-bridge/nothing") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("SSM parameter /ecr-bridge/invalid")
            && err.contains("rules[0].destinations[0].account"),
        "{err}"
    );
}

#[test]
fn given_no_aws_credentials_anywhere_when_planned_then_a_permanent_error_says_so_with_a_hint_and_no_sdk_dump(
) {
    let home = tempfile::tempdir().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), kuali().to_string()).unwrap();
    let mut cmd = Command::new(cli_binary());
    cmd.arg("plan").arg("--mapping-file").arg(file.path());
    // Nothing of the credential chain finds anything: no variables, an
    // empty home (no ~/.aws), instance metadata off (no host to ask here).
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("HOME", home.path())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "permanent, not 75: {stderr}");
    assert!(
        stderr.contains("no AWS credentials found") && stderr.contains("AWS_PROFILE"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, no provider dumps: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_hub_mapping_with_two_spokes_when_planned_then_each_spoke_is_listed_through_its_role_under_its_own_heading(
) {
    // Given: a repository in each spoke account (moto scopes ECR by the
    // assumed role's account), and a mapping naming both as sources.
    let moto = Moto::start();
    let sdk = common::moto_sdk(&moto.url(), "secret").await;
    let read_role = |account: &str| format!("arn:aws:iam::{account}:role/ecr-bridge-source-read");
    for (account, repository) in [
        ("333333333333", "team-a-api"),
        ("444444444444", "team-b-api"),
    ] {
        common::ecr_as(&sdk, &read_role(account))
            .await
            .create_repository()
            .repository_name(repository)
            .send()
            .await
            .unwrap();
    }
    let source = |account: &str| json!({"account": account, "region": "us-east-1", "role_arn": read_role(account), "external_id": "ecr-bridge-hub"});
    let config = json!({"sources": [source("333333333333"), source("444444444444")],
        "rules": [{"match": {"prefix": "team-"}, "destinations": dest("mirror/{suffix}")}]});

    // When: planned, as text and as JSON.
    let out = plan(&moto, &config, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = plan_json(&moto, &config);

    // Then: each spoke under its own heading, with only its own repository.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = text
        .find("source 333333333333/us-east-1 as arn:aws:iam::333333333333:role/ecr-bridge-source-read:")
        .unwrap_or_else(|| panic!("{text}"));
    let b = text
        .find("source 444444444444/us-east-1 as arn:aws:iam::444444444444:role/ecr-bridge-source-read:")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        text[a..b].contains("team-a-api -> 222222222222/us-east-1/mirror/a-api"),
        "{text}"
    );
    assert!(
        text[b..].contains("team-b-api -> 222222222222/us-east-1/mirror/b-api"),
        "{text}"
    );
    assert!(!text[b..].contains("team-a-api"), "{text}");
    let sources = doc["sources"].as_array().expect("one entry per source");
    assert_eq!(sources.len(), 2, "{doc}");
    assert_eq!(
        by_repository(&sources[1]["preview"], "team-b-api")["rule"],
        "rules[0]"
    );
}
