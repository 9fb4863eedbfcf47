//! `ecr-bridge escape USER_ID [--prefix P]`: the repository name access sync
//! (and Gen3's ecr-access-job before it) uses for a user.

use clap::Args;
use ecr_bridge::access::naming::{escaped_name, repository_name};
use ecr_bridge::reference::is_valid_ecr_repository_name;

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
    println!("{}", name_of(&args)?);
    Ok(())
}

fn name_of(args: &EscapeArgs) -> Result<String, Failure> {
    if let Some(prefix) = &args.prefix {
        // Named before escaping: the user id is not what is wrong.
        if !is_valid_ecr_repository_name(prefix.trim_end_matches('/')) {
            return Err(Failure::permanent(format!(
                "--prefix {prefix:?} is not a valid ECR repository name prefix (lower case letters, digits, single . _ - or / between them)"
            )));
        }
    }
    match &args.prefix {
        Some(prefix) => repository_name(prefix.trim_end_matches('/'), &args.user_id),
        None => escaped_name(&args.user_id),
    }
    .map_err(|e| Failure::permanent(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_bad_prefix_when_escaping_then_the_error_names_the_prefix_not_the_user() {
        let args = |prefix: &str| EscapeArgs {
            user_id: "user@x.io".into(),
            prefix: Some(prefix.into()),
        };

        let bad = name_of(&args("Bad Prefix")).expect_err("refused");

        assert!(
            bad.message.starts_with("--prefix \"Bad Prefix\""),
            "{}",
            bad.message
        );
        assert_eq!(
            name_of(&args("nextflow-approved/")).ok().as_deref(),
            Some("nextflow-approved/user-40x-2eio")
        );
    }
}
