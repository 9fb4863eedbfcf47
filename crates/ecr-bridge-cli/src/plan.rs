//! `ecr-bridge plan`: what a mapping config would do, before deploying it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ecr_bridge::mapping::{Decision, MappingConfig};
use ecr_bridge_aws::mapping_store::{MappingSource, MappingStore};
use ecr_bridge_aws::preview::{self, Preview};

use crate::Failure;

#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("mapping")
        .required(true)
        .args(["mapping_file", "mapping_parameter"])
))]
pub struct PlanArgs {
    /// The mapping config as a JSON file.
    #[arg(long, value_name = "FILE")]
    mapping_file: Option<PathBuf>,
    /// The SSM parameter holding the mapping config (read with your AWS credentials).
    #[arg(long, value_name = "NAME")]
    mapping_parameter: Option<String>,
    /// Show the decision for one source repository, with every rule's verdict (no ECR calls).
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// With --repository: the pushed tag (omit for a push by digest).
    #[arg(long, value_name = "TAG", requires = "repository")]
    tag: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PlanArgs) -> Result<(), Failure> {
    let sdk = || aws_config::load_defaults(aws_config::BehaviorVersion::latest());
    let config = match (&args.mapping_file, &args.mapping_parameter) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::permanent(format!("reading {}: {e}", path.display())))?;
            MappingConfig::from_json(&text).map_err(|e| {
                Failure::permanent(format!(
                    "mapping config (file {}) is invalid: {e}",
                    path.display()
                ))
            })?
        }
        // The same reader the replicator uses (SecureString decrypted, errors named).
        (None, Some(name)) => {
            let store = MappingStore::new(
                MappingSource::Parameter {
                    ssm: aws_sdk_ssm::Client::new(&sdk().await),
                    name: name.clone(),
                },
                Duration::ZERO,
            );
            let config = store.get().await.map_err(|e| Failure {
                retryable: e.is_retryable(),
                message: e.to_string(),
            })?;
            Arc::unwrap_or_clone(config)
        }
        (None, None) => {
            return Err(Failure::permanent(
                "give --mapping-file or --mapping-parameter",
            ))
        }
    };

    if let Some(repository) = &args.repository {
        return explain(&config, repository, args.tag.as_deref(), args.json);
    }
    let base = sdk().await;
    let failure = |e: ecr_bridge_aws::error::AwsError| Failure {
        retryable: e.retryable,
        message: e.to_string(),
    };
    if config.sources().is_empty() {
        let ecr = aws_sdk_ecr::Client::new(&base);
        let preview = preview::preview(&config, &ecr).await.map_err(failure)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&preview).unwrap_or_default()
            );
        } else {
            print!("{}", render(&preview));
        }
        return Ok(());
    }
    // A hub's mapping: each source through its own role, as the replicator
    // reads it (your credentials must be allowed to assume those roles).
    let mut previews = Vec::new();
    for source in config.sources() {
        let ecr = ecr_bridge_aws::sts::ecr_client(
            &base,
            source.region_id(),
            source.assume(),
            "ecr-bridge-plan",
        )
        .await;
        let label = source.access(None).to_string();
        let preview = preview::preview(&config, &ecr).await.map_err(|e| Failure {
            retryable: e.retryable,
            message: format!("source {label}: {e}"),
        })?;
        previews.push((label, preview));
    }
    if args.json {
        let doc: Vec<serde_json::Value> = previews
            .iter()
            .map(|(source, preview)| serde_json::json!({"source": source, "preview": preview}))
            .collect();
        let doc = serde_json::json!({ "sources": doc });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for (source, preview) in &previews {
            println!("source {source}:");
            for line in render(preview).lines() {
                println!("  {line}");
            }
        }
    }
    Ok(())
}

fn explain(
    config: &MappingConfig,
    repository: &str,
    tag: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let decision = config.decide(repository, tag);
    let verdicts = config.explain(repository, tag);
    if json {
        let doc = serde_json::json!({"repository": repository, "tag": tag, "decision": decision, "rules": verdicts});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let pushed = match tag {
        Some(t) => format!("{repository}:{t}"),
        None => format!("{repository} (pushed by digest)"),
    };
    // The verdicts below say which rule decided and why: the headline only
    // says what comes of it.
    let outcome = match &decision {
        Decision::Replicate(_) => "replicated",
        Decision::TagFiltered { .. } => "not replicated: a tag filter refuses it",
        Decision::NoMatchingRule => "not replicated: no rule matches",
    };
    println!("{pushed}: {outcome}");
    for v in verdicts {
        println!("  {v}");
    }
    if let Decision::Replicate(r) = &decision {
        for t in &r.destinations {
            match &t.repository {
                Ok(name) => println!("  -> {}/{}/{name}", t.access.account, t.access.region),
                Err(e) => println!("  -> {}/{}: {e}", t.access.account, t.access.region),
            }
        }
    }
    Ok(())
}

fn render(preview: &Preview) -> String {
    let mut out = String::new();
    for r in &preview.repositories {
        let targets: Vec<String> = r
            .destinations
            .iter()
            .map(|d| match &d.repository {
                Ok(name) => format!("{}/{}/{name}", d.account, d.region),
                Err(e) => format!("{}/{}: {e}", d.account, d.region),
            })
            .collect();
        out.push_str(&format!(
            "{} -> {}  [rule {}]  images: {} of {} replicate, tags: {} of {}\n",
            r.repository,
            targets.join(", "),
            r.rule,
            r.images_replicated,
            r.images,
            r.tags_replicated,
            r.tags
        ));
    }
    for u in &preview.unmatched {
        out.push_str(&format!("{u}: no rule matches\n"));
    }
    let t = &preview.totals;
    out.push_str(&format!(
        "total: {} repositories matched, {} unmatched; {} of {} images and {} tags would replicate\n",
        t.repositories_matched,
        preview.unmatched.len(),
        t.images_replicated,
        t.images,
        t.tags_replicated
    ));
    out
}
