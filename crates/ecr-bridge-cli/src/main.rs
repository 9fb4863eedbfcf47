//! `ecr-bridge`: the operator's command-line tool.

mod backfill;
mod copy;
mod escape;
mod plan;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ecr-bridge",
    version,
    about = "Copy container images between registries under new names, and manage ECR access"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy an image (single-arch, multi-arch index or artifact) to another repository, byte for byte.
    Copy(copy::CopyArgs),
    /// Print the ECR repository name of a user id, escaped as Gen3's ecr-access-job does.
    Escape(escape::EscapeArgs),
    /// Show which source repositories a mapping config matches, where they would land, and how many images that means.
    Plan(plan::PlanArgs),
    /// Replicate the images that existed before: ask the deployed image replicator to enqueue every matching image a destination lacks, and follow the work.
    Backfill(backfill::BackfillArgs),
}

/// Exit code for failures a retry may fix (sysexits' EX_TEMPFAIL).
const EXIT_RETRYABLE: u8 = 75;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Copy(args) => copy::run(args).await,
            Command::Escape(args) => escape::run(args),
            Command::Plan(args) => plan::run(args).await,
            Command::Backfill(args) => backfill::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            if failure.retryable {
                eprintln!("(transient: retrying later may succeed)");
                ExitCode::from(EXIT_RETRYABLE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A failed command: what to tell the user, and whether trying again can help.
pub struct Failure {
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    pub fn permanent(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Logs go to stderr (stdout carries the JSON report); `ECR_BRIDGE_LOG`
/// takes a tracing filter such as `info` or `ecr_bridge::http=debug`, with
/// the AWS SDK's body logging capped as in the functions.
fn init_logging() {
    ecr_bridge_aws::logging::init_cli("ECR_BRIDGE_LOG", "warn");
}
