//! `ecr-bridge copy SRC DST`.

use std::sync::Arc;

use clap::Args;
use ecr_bridge::copy::{CopyOptions, ImageCopier};
use ecr_bridge::reference::{ImageReference, Selector};
use ecr_bridge::registry::{
    self, BasicCredentials, Endpoint, RegistryClient, Repository, RetryPolicy, StaticCredentials,
    Timeouts,
};

use crate::progress::ProgressLine;
use crate::Failure;

#[derive(Args)]
pub struct CopyArgs {
    /// Source: host[:port]/repository[:tag|@digest]
    source: String,
    /// Destination: host[:port]/repository[:tag]. Without a tag, the source's tag is used (if it had one).
    destination: String,
    /// Source credentials as user:password (prefer --src-creds-env: command lines are visible to other users).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "src_creds_env")]
    src_creds: Option<String>,
    /// Name of an environment variable holding the source's user:password.
    #[arg(long, value_name = "VAR")]
    src_creds_env: Option<String>,
    /// Destination credentials as user:password.
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "dest_creds_env")]
    dest_creds: Option<String>,
    /// Name of an environment variable holding the destination's user:password.
    #[arg(long, value_name = "VAR")]
    dest_creds_env: Option<String>,
    /// Extra tags to set on the destination (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Blobs copied concurrently.
    #[arg(long, default_value_t = CopyOptions::default().blob_concurrency as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Allow plain HTTP to loopback registries (127.0.0.0/8, ::1, localhost). Never allowed elsewhere.
    #[arg(long)]
    plain_http_loopback: bool,
    /// Never try cross-repository mounts, even within one registry.
    #[arg(long)]
    no_mount: bool,
    /// Also copy cosign signature/attestation tags and OCI referrers.
    #[arg(long)]
    referrers: bool,
    /// Attempts per request or blob before giving up (1 = no retries).
    #[arg(long, default_value_t = RetryPolicy::default().max_attempts, value_parser = clap::value_parser!(u32).range(1..=20))]
    attempts: u32,
    /// Give up after this many seconds (exit 75: run it again to carry on). No limit by default.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    timeout: Option<u64>,
    /// No progress line on a terminal (there is none when stderr is not one).
    #[arg(long, short)]
    quiet: bool,
}

fn credentials(
    pair: &Option<String>,
    env: &Option<String>,
    which: &str,
) -> Result<StaticCredentials, Failure> {
    let value = match (pair, env) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
            Failure::permanent(format!(
                "{which} credentials: environment variable {var} is not set"
            ))
        })?),
        (None, None) => None,
    };
    value
        .map(|v| {
            BasicCredentials::parse(&v)
                .map_err(|e| Failure::permanent(format!("{which} credentials: {e}")))
        })
        .transpose()
        .map(StaticCredentials)
}

pub async fn run(args: CopyArgs) -> Result<(), Failure> {
    let src: ImageReference = args
        .source
        .parse()
        .map_err(|e| Failure::permanent(format!("source: {e}")))?;
    let dst: ImageReference = args
        .destination
        .parse()
        .map_err(|e| Failure::permanent(format!("destination: {e}")))?;
    if dst.digest.is_some() {
        return Err(Failure::permanent(
            "destination: give a repository and optionally a tag, not a digest",
        ));
    }
    let selector = src.selector().ok_or_else(|| {
        Failure::permanent("source: give a tag or a digest (host/repo:tag or host/repo@sha256:...)")
    })?;
    let mut tags: Vec<String> = match (&dst.tag, &selector) {
        (Some(t), _) => vec![t.clone()],
        (None, Selector::Tag(t)) => vec![t.clone()],
        (None, Selector::Digest(_)) => Vec::new(),
    };
    for t in &args.tags {
        ecr_bridge::reference::validate_tag(t)
            .map_err(|e| Failure::permanent(format!("--tag: {e}")))?;
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }

    let deadline = args
        .timeout
        .map(|secs| std::time::Instant::now() + std::time::Duration::from_secs(secs));
    let timeouts = Timeouts::default();
    let http = registry::http_client(&timeouts).map_err(|e| Failure::permanent(e.to_string()))?;
    let retry = RetryPolicy {
        max_attempts: args.attempts,
        ..RetryPolicy::default()
    };
    let client = |reference: &ImageReference, creds: StaticCredentials, which: &str| {
        let endpoint = Endpoint::parse(&reference.registry, args.plain_http_loopback)
            .map_err(|e| Failure::permanent(format!("{which}: {e}")))?;
        Ok::<_, Failure>(
            RegistryClient::new(
                http.clone(),
                endpoint,
                Arc::new(creds),
                retry.clone(),
                timeouts.clone(),
            )
            .with_deadline(deadline),
        )
    };
    let src_creds = credentials(&args.src_creds, &args.src_creds_env, "source")?;
    let source = Repository::new(client(&src, src_creds, "source")?, src.repository.clone());
    let dest_creds = credentials(&args.dest_creds, &args.dest_creds_env, "destination")?;
    let target = Repository::new(
        client(&dst, dest_creds, "destination")?,
        dst.repository.clone(),
    );
    let line = ProgressLine::start(args.quiet);
    let copier = ImageCopier::new(CopyOptions {
        blob_concurrency: args.concurrency as usize,
        mount: !args.no_mount,
        copy_referrers: args.referrers,
        progress: line.as_ref().map(ProgressLine::progress),
        ..CopyOptions::default()
    });
    let copied = copier.copy(&source, &selector, &target, &tags).await;
    if let Some(line) = line {
        line.finish();
    }
    match copied {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            Ok(())
        }
        Err(e) => Err(Failure {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }),
    }
}
