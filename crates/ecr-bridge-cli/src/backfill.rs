//! `ecr-bridge backfill`: sends a backfill request to the deployed image
//! replicator (Lambda Invoke) and, with `--wait`, follows the run's durable
//! counts (listing, then copying) until it finishes, then prints what was
//! copied and what failed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use ecr_bridge_aws::backfill::{BackfillAction, BackfillRequest, BackfillSummary, RunState};
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
    /// Only count: images found, already present, missing. Nothing is
    /// enqueued. One invocation: a registry too large for it gets partial
    /// counts, said so.
    #[arg(long, conflicts_with_all = ["wait", "rerun"])]
    check: bool,
    /// Start a new run even if the last one of this scope finished cleanly
    /// under the same mapping (which otherwise makes `start` a no-op).
    #[arg(long)]
    rerun: bool,
    /// Follow the run until it finishes, then print copied and failed.
    #[arg(long)]
    wait: bool,
    /// With --wait: seconds between status checks.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_seconds: u64,
    /// With --wait: give up waiting after this long (the work goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    timeout_seconds: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// With --wait: no progress line on the terminal.
    #[arg(long, short)]
    quiet: bool,
}

/// What `--wait` concludes, from the run's counts.
#[derive(Debug, serde::Serialize)]
struct WaitReport {
    images_found: i64,
    filtered: i64,
    archived: i64,
    already_present: i64,
    copied: i64,
    skipped: i64,
    /// Failed for good, refused by the queue, or lost to the dead-letter queue.
    failed: i64,
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
    if !args.json && !args.quiet {
        eprintln!("{}", describe(&first));
    }
    // Progress is redrawn in place on a terminal; a pipe or a log file
    // gets the start and the end only.
    let redraw = shows_progress(args.quiet, args.json, std::io::stderr().is_terminal());

    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let mut last = first.clone();
    while !finished(&last) {
        if Instant::now() >= deadline {
            return Err(Failure {
                message: format!(
                    "the backfill did not finish within {} s; the work goes on: run `backfill --wait` again to follow it (it joins the run)",
                    args.timeout_seconds
                ),
                retryable: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(args.poll_seconds)).await;
        last = invoke(&lambda, &args, BackfillAction::Status).await?;
        if redraw {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\x1b[K", progress(&last, started.elapsed()));
            let _ = err.flush();
        }
    }
    if redraw {
        eprintln!();
    }
    let c = &last.counts;
    let outcome = WaitReport {
        images_found: c.images_found,
        filtered: c.filtered,
        archived: c.archived,
        already_present: c.already_present,
        copied: c.copied,
        skipped: c.skipped,
        failed: c.failed + c.enqueue_failed + last.unaccounted(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if args.json {
        println!(
            "{}",
            json!({ "summary": first, "final": last, "outcome": outcome })
        );
    } else {
        println!(
            "done in {:.1} s: {} images found, {} filtered out, {} archived (not copied), {} already present, {} copied, {} no longer routed, {} failed",
            outcome.duration_ms as f64 / 1000.0,
            outcome.images_found,
            outcome.filtered,
            outcome.archived,
            outcome.already_present,
            outcome.copied,
            outcome.skipped,
            outcome.failed
        );
    }
    if outcome.failed > 0 {
        return Err(Failure::permanent(format!(
            "{} images were not copied: see the function's log (outcome \"failed\" or \"dropped\") and the backfill dead-letter queue, fix, and run `backfill --rerun`",
            outcome.failed
        )));
    }
    Ok(())
}

/// Whether the run is over (a `start` that found nothing to do is too).
fn finished(s: &BackfillSummary) -> bool {
    s.run.as_ref().is_none_or(|r| r.state == RunState::Finished)
}

/// Whether `--wait` redraws a progress line: on a terminal, not asked
/// to be quiet, not writing JSON.
fn shows_progress(quiet: bool, json: bool, terminal: bool) -> bool {
    terminal && !quiet && !json
}

/// The `--wait` progress line: the run's counts, and work items done per
/// second since the command started.
fn progress(s: &BackfillSummary, elapsed: Duration) -> String {
    let rate = s.counts.items_done() as f64 / elapsed.as_secs_f64().max(0.001);
    format!("{}, {rate:.1}/s, {} s", counts(s), elapsed.as_secs())
}

/// Listing, then work items done of enqueued.
fn counts(s: &BackfillSummary) -> String {
    let c = &s.counts;
    let state = match s.run.as_ref().map(|r| r.state) {
        Some(RunState::Listing) => "listing",
        Some(RunState::Copying) => "copying",
        _ => "finished",
    };
    format!(
        "{state}: {}/{} repositories listed, {} images found; {}/{} done ({} copied, {} already present, {} failed)",
        c.repositories_listed,
        c.repositories_matched,
        c.images_found,
        c.items_done(),
        c.enqueued,
        c.copied,
        c.already_present,
        c.failed
    )
}

fn describe(s: &BackfillSummary) -> String {
    let c = &s.counts;
    match (s.action, &s.run) {
        (BackfillAction::Check, _) => format!(
            "{} images in {} repositories ({} unmatched repositories): {} filtered out, {}, {} already present, {} missing{}",
            c.images_found,
            c.repositories_matched,
            c.repositories_unmatched,
            c.filtered,
            archived(c.archived),
            c.already_present,
            s.missing,
            if s.complete {
                ""
            } else {
                " (partial: the check ran out of time; `backfill` itself has no such limit)"
            }
        ),
        (_, Some(run)) if run.joined && run.state == RunState::Finished => format!(
            "backfill run {} of this scope already finished under this mapping ({} copied, {} already present): nothing to do; --rerun starts a new one",
            run.id, c.copied, c.already_present
        ),
        (_, Some(run)) => format!(
            "backfill run {}{}: {}{}",
            run.id,
            if run.joined { " (joined: it was already going)" } else { "" },
            counts(s),
            if c.archived > 0 { format!("; {}", archived(c.archived)) } else { String::new() }
        ),
        (_, None) => "no backfill has run".to_string(),
    }
}

/// Archived images cannot be pulled until restored: say what to do.
fn archived(count: i64) -> String {
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
        rerun: args.rerun && action == BackfillAction::Start,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_run_half_copied_when_its_progress_is_drawn_then_listing_items_and_rate_read_plainly()
    {
        // As the function answers `status`.
        let s: BackfillSummary = serde_json::from_value(json!({
            "action": "status", "complete": true, "duration_ms": 40, "missing": 0,
            "repositories_matched": 200, "repositories_listed": 150, "repositories_unmatched": 0,
            "images_found": 15000, "filtered": 0, "archived": 0, "enqueued": 15000, "enqueue_failed": 0,
            "copied": 6000, "already_present": 1000, "skipped": 0, "failed": 500, "listings_open": 50,
            "run": {"id": "bf-0123456789abcdef", "state": "listing", "scope": [],
                    "started_at_ms": 0, "updated_at_ms": 0, "joined": false}
        }))
        .expect("a status summary");

        assert_eq!(
            progress(&s, Duration::from_secs(300)),
            "listing: 150/200 repositories listed, 15000 images found; 7500/15000 done (6000 copied, 1000 already present, 500 failed), 25.0/s, 300 s"
        );
    }

    #[test]
    fn given_each_output_when_waiting_then_only_a_terminal_without_quiet_or_json_gets_progress() {
        assert!(shows_progress(false, false, true));
        assert!(!shows_progress(true, false, true), "--quiet");
        assert!(!shows_progress(false, true, true), "--json");
        assert!(!shows_progress(false, false, false), "a pipe");
    }
}
