//! `ecr-bridge copy`'s progress line: drawn on a terminal (a pseudo-terminal
//! made by util-linux `script`), never in a pipe or with `--quiet`, where
//! stderr stays free of it and stdout holds only the JSON report.

mod common;

use std::process::{Command, Output};

use common::{cli_binary, push_image};
use rig::{ImageSpec, Registry};

/// `ecr-bridge copy` of `app:v1` from `src` to `dst`, with `extra` flags,
/// under a pseudo-terminal when `tty` (stdout and stderr both go to it, so
/// `script` returns them as one stream).
fn copy_cli(src: &Registry, dst: &Registry, extra: &[&str], tty: bool) -> Output {
    let mut args = vec![
        cli_binary().display().to_string(),
        "copy".into(),
        format!("{}/app:v1", src.host()),
        format!("{}/mirror/app", dst.host()),
        "--plain-http-loopback".into(),
        "--src-creds-env".into(),
        "SRC_CREDS".into(),
        "--dest-creds-env".into(),
        "DST_CREDS".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = if tty {
        let mut c = Command::new("script");
        // -q: no banner, -e: the command's exit code, -c: the command.
        c.args(["-qec", &args.join(" "), "/dev/null"]);
        c
    } else {
        let mut c = Command::new(&args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.env("SRC_CREDS", src.creds())
        .env("DST_CREDS", dst.creds())
        .output()
        .unwrap()
}

#[test]
fn given_a_terminal_when_copying_then_a_progress_line_ends_at_every_blob_and_byte_and_a_pipe_or_quiet_gets_none(
) {
    let (src, dst) = (
        Registry::start("111111111111"),
        Registry::start("222222222222"),
    );
    let image = push_image(
        &src,
        &ImageSpec::single(&[400_000, 300_000, 200_000]),
        "app",
        "v1",
    );
    let total = image.layout.total_blob_bytes;

    let on_tty = copy_cli(&src, &dst, &[], true);
    let quiet_tty = copy_cli(&src, &dst, &["--quiet"], true);
    let piped = copy_cli(&src, &dst, &[], false);

    let tty_text = String::from_utf8_lossy(&on_tty.stdout);
    assert!(on_tty.status.success(), "{tty_text}");
    let last = tty_text
        .split(['\r', '\n'])
        .rfind(|l| l.contains(" blobs, "))
        .unwrap_or_else(|| panic!("no progress line on the terminal: {tty_text:?}"));
    let mb = total as f64 / 1_000_000.0;
    assert!(
        last.starts_with("4/4 blobs, ") && last.contains(&format!("{mb:.1} of {mb:.1} MB")),
        "the last line counts every blob and byte ({total} B): {last:?}"
    );
    assert!(quiet_tty.status.success());
    assert!(!String::from_utf8_lossy(&quiet_tty.stdout).contains(" blobs, "));
    assert!(piped.status.success());
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains(" blobs, ") && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&piped.stdout).expect("only the JSON report");
    assert_eq!(report["digest"], image.layout.digest.as_str());
}
