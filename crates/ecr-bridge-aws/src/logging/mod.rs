//! Log set-up shared by the functions and the CLI. The functions write JSON
//! lines (`json_lines`: with the invocation's `requestId`) when Lambda's log
//! format is JSON, at the level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`;
//! the CLI writes plain lines on stderr.
//!
//! Whatever level is asked for, the AWS SDK's HTTP layer never goes past
//! DEBUG: at TRACE it logs raw response bodies, and those carry registry
//! tokens (GetAuthorizationToken) and session keys (AssumeRole).

mod json_lines;

use tracing_subscriber::EnvFilter;

use json_lines::JsonLines;

/// Targets that log HTTP bodies at TRACE.
const BODY_LOGGERS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "h2",
];

/// The filter for `spec` (e.g. `info`, `debug,ecr_bridge=trace`), with the
/// body-logging targets capped at DEBUG when the spec would reach TRACE
/// (a cap only: at `info` they stay at `info`).
pub fn filter(spec: &str) -> EnvFilter {
    capped(
        EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info")),
        spec,
    )
}

/// `filter` with the body-logging targets capped at DEBUG if `spec` asks for TRACE.
fn capped(mut filter: EnvFilter, spec: &str) -> EnvFilter {
    if !spec.to_ascii_lowercase().contains("trace") {
        return filter;
    }
    for target in BODY_LOGGERS {
        if let Ok(d) = format!("{target}=debug").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Installs the global subscriber for a command-line tool: plain lines on
/// stderr (stdout carries its report; colour only on a terminal), the
/// filter from the variable `var` (`default` when it is unset or not a
/// filter), capped like the functions'. By default the SDK's credential
/// chain is held at `error`: it warns for each provider it tries, with its
/// error's debug dump, before the command's own error says the same once.
pub fn init_cli(var: &str, default: &str) {
    use std::io::IsTerminal;
    let filter = match EnvFilter::try_from_env(var) {
        Ok(f) => capped(f, &std::env::var(var).unwrap_or_default()),
        Err(_) => {
            let quiet_chain = "aws_config=error".parse().expect("a directive");
            capped(EnvFilter::new(default), default).add_directive(quiet_chain)
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Installs the global subscriber for a Lambda function (or a local run).
pub fn init_lambda() {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .unwrap_or_else(|| "info".to_string());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&spec))
        .with_target(false);
    if json {
        builder.json().event_format(JsonLines).init();
    } else {
        builder.with_ansi(false).without_time().init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_trace_or_info_when_filtering_then_sdk_bodies_are_capped_only_when_trace_was_asked() {
        let trace = filter("trace").to_string();
        assert!(trace.contains("aws_smithy_runtime=debug"), "{trace}");
        let info = filter("info").to_string();
        assert!(
            !info.contains("aws_smithy_runtime"),
            "info must not lower the SDK to debug: {info}"
        );
        let targeted = filter("info,aws_smithy_runtime=trace").to_string();
        assert!(targeted.contains("aws_smithy_runtime=debug"), "{targeted}");
    }

    #[test]
    fn given_a_cli_filter_asking_for_trace_when_capped_then_sdk_bodies_stay_at_debug() {
        let spec = "ecr_bridge=trace";
        let traced = capped(EnvFilter::try_new(spec).unwrap(), spec).to_string();
        assert!(traced.contains("aws_smithy_runtime=debug"), "{traced}");
        assert!(traced.contains("ecr_bridge=trace"), "{traced}");
        let quiet = capped(EnvFilter::new("warn"), "warn").to_string();
        assert!(!quiet.contains("aws_smithy_runtime"), "{quiet}");
    }
}
