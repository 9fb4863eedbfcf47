//! `ecr-bridge escape USER_ID [--prefix P]`: the repository name access sync
//! (and Gen3's ecr-access-job before it) uses for a user.

use clap::Args;
use ecr_bridge::access::naming::{escaped_name, repository_name};

use crate::Failure;

#[derive(Args)]
pub struct EscapeArgs {
    /// The user id as it is in the users table (e.g. an email address).
    user_id: String,
    /// Print the whole repository name under this prefix (e.g. nextflow-approved).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
}

pub fn run(args: EscapeArgs) -> Result<(), Failure> {
    let name = match &args.prefix {
        Some(prefix) => repository_name(prefix.trim_end_matches('/'), &args.user_id),
        None => escaped_name(&args.user_id),
    }
    .map_err(|e| Failure::permanent(e.to_string()))?;
    println!("{name}");
    Ok(())
}
