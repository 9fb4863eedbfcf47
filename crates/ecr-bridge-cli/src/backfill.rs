//! `ecr-bridge backfill`: sends a backfill request to the deployed image
//! replicator (Lambda Invoke) and, with `--wait`, follows the work queue
//! until it drains, then prints what was copied and what failed.

use std::time::{Duration, Instant};

use clap::Args;
use ecr_bridge_aws::backfill::{BackfillAction, BackfillRequest, BackfillSummary};
use serde_json::{json, Value};

use crate::Failure;

#[derive(Args)]
pub struct BackfillArgs {
    /// The image replicator function (name or ARN).
    #[arg(long, value_name = "NAME", env = "ECR_BRIDGE_FUNCTION")]
    function_name: String,
    /// Only this source repository (repeat for more; default: every repository a rule matches).
    #[arg(long = "repository", value_name = "NAME")]
    repositories: Vec<String>,
    /// Only count: images found, already present, missing. Nothing is enqueued.
    #[arg(long, conflicts_with = "wait")]
    check: bool,
    /// Follow the work queue until it drains, then count again and print
    /// copied and failed.
    #[arg(long)]
    wait: bool,
    /// With --wait: seconds between queue checks.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_seconds: u64,
    /// With --wait: give up waiting after this long (the work goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    timeout_seconds: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What `--wait` concludes.
#[derive(Debug, serde::Serialize)]
struct WaitReport {
    images_found: usize,
    filtered: usize,
    archived: usize,
    already_present: usize,
    copied: usize,
    failed: usize,
    duration_ms: u64,
}

pub async fn run(args: BackfillArgs) -> Result<(), Failure> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let started = Instant::now();
    let action = if args.check {
        BackfillAction::Check
    } else {
        BackfillAction::Start
    };
    let first = invoke(&lambda, &args, action).await?;
    if !args.wait {
        if args.json {
            println!("{}", json!({ "summary": first }));
        } else {
            println!("{}", describe(&first));
        }
        return Ok(());
    }
    if !args.json {
        eprintln!("{}", describe(&first));
    }

    let deadline = started + Duration::from_secs(args.timeout_seconds);
    // Approximate counts: only two empty readings in a row mean drained.
    let mut empty_readings = 0;
    while first.enqueued > 0 && empty_readings < 2 {
        if Instant::now() >= deadline {
            return Err(Failure {
                message: format!(
                    "the queue did not drain within {} s; the work goes on: run again with --check to count, or --wait to follow",
                    args.timeout_seconds
                ),
                retryable: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(args.poll_seconds)).await;
        let status = invoke(&lambda, &args, BackfillAction::Status).await?;
        let depth = status.queue.unwrap_or_default();
        if depth.waiting + depth.in_flight == 0 {
            empty_readings += 1;
        } else {
            empty_readings = 0;
            if !args.json {
                eprintln!(
                    "waiting: {} queued, {} in progress ({} s)",
                    depth.waiting,
                    depth.in_flight,
                    started.elapsed().as_secs()
                );
            }
        }
    }
    let last = invoke(&lambda, &args, BackfillAction::Check).await?;
    let outcome = WaitReport {
        images_found: last.images_found,
        filtered: last.filtered,
        archived: last.archived,
        already_present: first.already_present,
        copied: last.already_present.saturating_sub(first.already_present),
        failed: last.missing,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if args.json {
        println!(
            "{}",
            json!({ "summary": first, "final": last, "outcome": outcome })
        );
    } else {
        println!(
            "done in {:.1} s: {} images found, {} filtered out, {} archived (not copied), {} already present, {} copied, {} failed",
            outcome.duration_ms as f64 / 1000.0,
            outcome.images_found,
            outcome.filtered,
            outcome.archived,
            outcome.already_present,
            outcome.copied,
            outcome.failed
        );
    }
    if outcome.failed > 0 {
        return Err(Failure::permanent(format!(
            "{} images are still missing in a destination: see the function's log (outcome \"failed\" or \"dropped\") and the backfill dead-letter queue, fix, and run backfill again",
            outcome.failed
        )));
    }
    Ok(())
}

fn describe(s: &BackfillSummary) -> String {
    let head = format!(
        "{} images in {} repositories ({} unmatched repositories): {} filtered out, {}, {} already present, {} missing",
        s.images_found,
        s.repositories_matched,
        s.repositories_unmatched,
        s.filtered,
        archived(s.archived),
        s.already_present,
        s.missing
    );
    match s.action {
        BackfillAction::Start => format!(
            "{head}; {} enqueued{}",
            s.enqueued,
            if s.enqueue_failed > 0 {
                format!(", {} refused by the queue (run again)", s.enqueue_failed)
            } else {
                String::new()
            }
        ),
        _ => head,
    }
}

/// Archived images cannot be pulled until restored: say what to do.
fn archived(count: usize) -> String {
    if count == 0 {
        "0 archived".to_string()
    } else {
        format!(
            "{count} archived (not copied: restore them from ECR's archive and run backfill again)"
        )
    }
}

async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    args: &BackfillArgs,
    action: BackfillAction,
) -> Result<BackfillSummary, Failure> {
    let request = BackfillRequest {
        action,
        repositories: args.repositories.clone(),
    };
    let payload = json!({ "backfill": request }).to_string();
    let out = lambda
        .invoke()
        .function_name(&args.function_name)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload))
        .send()
        .await
        .map_err(|e| {
            let e = ecr_bridge_aws::AwsError::from_sdk("lambda:Invoke", e);
            Failure {
                retryable: e.retryable,
                message: e.to_string(),
            }
        })?;
    let body: Value = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null);
    if let Some(kind) = out.function_error() {
        let error_type = body["errorType"].as_str().unwrap_or(kind);
        return Err(Failure {
            retryable: error_type.starts_with("Transient"),
            message: format!(
                "{} answered {error_type}: {}",
                args.function_name,
                body["errorMessage"].as_str().unwrap_or("(no message)")
            ),
        });
    }
    serde_json::from_value(body["summary"].clone()).map_err(|e| {
        Failure::permanent(format!(
            "{} did not answer with a backfill summary ({e}): is it the image replicator?",
            args.function_name
        ))
    })
}
