//! `rig`: the test rig's pieces for shell scripts (benchmark, demo).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use rig::{build_layout, parse_size, Format, ImageSpec, Platform, Registry, RegistryOptions};

#[derive(Parser)]
#[command(
    name = "rig",
    about = "ecr-bridge test rig: test images and loopback registries for scripts"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a deterministic test image into an OCI layout and print the
    /// layout as one JSON line (dir, tag, digest, media_type, manifests,
    /// blobs, total_blob_bytes, build_seconds).
    ///
    /// Push it with:
    ///   skopeo copy --all --preserve-digests --dest-tls-verify=false
    ///   --dest-creds AWS:PASSWORD oci:DIR:TAG docker://HOST/REPO:TAG
    BuildImage {
        /// Layout directory (created; other tags already in it are kept).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        tag: String,
        /// Compressed layer sizes, comma-separated, binary units: 1M,50M,300M.
        #[arg(long, value_delimiter = ',', value_parser = parse_size, required_unless_present = "artifact")]
        layers: Vec<u64>,
        /// Build an index with one image per platform: linux/amd64,linux/arm64/v8.
        #[arg(long, value_delimiter = ',', value_parser = Platform::parse)]
        platforms: Vec<Platform>,
        /// Multi-arch: leading layers identical across platforms.
        #[arg(long, default_value_t = 0)]
        shared: usize,
        #[arg(long, value_enum, default_value = "oci")]
        format: FormatArg,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// An OCI artifact (SBOM-like, custom config media type) instead of an image.
        #[arg(long, conflicts_with_all = ["platforms", "format"])]
        artifact: bool,
    },
    /// Run a docker-registry on 127.0.0.1 until this process gets SIGTERM,
    /// SIGINT or SIGHUP (then the registry is killed and its temp dir removed;
    /// it is also killed if rig itself is SIGKILLed).
    ///
    /// Once the registry answers, prints one JSON line: host, url, account,
    /// user, password, creds, auth_header, pid (of rig: kill this one),
    /// registry_pid, dir, log; with --tls also ca (the rig CA's PEM, for
    /// SSL_CERT_FILE or curl --cacert), ca_bundle (that CA and the system's
    /// roots) and cert_dir (for skopeo --src-cert-dir/--dest-cert-dir). The CA
    /// is this rig process's own, removed when it exits. Use from a script:
    ///
    ///   rig registry --account 111111111111 > reg.json &
    ///   RIG_PID=$!
    ///   until [ -s reg.json ]; do sleep 0.1; done
    ///   HOST=$(python3 -c 'import json;print(json.load(open("reg.json"))["host"])')
    ///   ...
    ///   kill $RIG_PID; wait $RIG_PID
    ///
    /// rig exits non-zero if the registry cannot start (then nothing is
    /// printed on stdout) or if it later dies on its own.
    #[command(verbatim_doc_comment)]
    Registry {
        /// Password is "<account>-auth-token" for user AWS, like an ECR token.
        #[arg(long, default_value = "111111111111")]
        account: String,
        /// Fixed port (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Keep config, data and registry.log in this directory (not removed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// No authentication at all.
        #[arg(long)]
        anonymous: bool,
        /// Serve HTTPS with a certificate for 127.0.0.1/localhost from a CA
        /// made for this run (url is then https://...).
        #[arg(long)]
        tls: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Oci,
    Docker,
}

fn main() {
    match Cli::parse().command {
        Cmd::BuildImage {
            out,
            tag,
            layers,
            platforms,
            shared,
            format,
            seed,
            artifact,
        } => {
            let spec = if artifact {
                let mut s = ImageSpec::artifact();
                if !layers.is_empty() {
                    s.layers = layers;
                }
                s
            } else {
                let format = match format {
                    FormatArg::Oci => Format::Oci,
                    FormatArg::Docker => Format::Docker,
                };
                ImageSpec::multi_arch(&platforms, &layers, shared).with_format(format)
            }
            .with_seed(seed);
            let t = Instant::now();
            let layout = build_layout(&out, &tag, &spec);
            let mut v = serde_json::to_value(&layout).expect("layout to JSON");
            v["build_seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
            println!("{v}");
        }
        Cmd::Registry {
            account,
            port,
            dir,
            anonymous,
            tls,
        } => serve(account, port, dir, anonymous, tls),
    }
}

fn serve(account: String, port: Option<u16>, dir: Option<PathBuf>, anonymous: bool, tls: bool) {
    use tokio::signal::unix::{signal, SignalKind};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Signal handlers go in before the registry starts so an early kill still cleans up.
    let (mut term, mut int, mut hup) = rt.block_on(async {
        (
            signal(SignalKind::terminate()).expect("SIGTERM handler"),
            signal(SignalKind::interrupt()).expect("SIGINT handler"),
            signal(SignalKind::hangup()).expect("SIGHUP handler"),
        )
    });
    let mut reg = Registry::start_with(RegistryOptions {
        anonymous,
        port,
        dir,
        tls: tls.then_some(rig::ServerCert::Rig),
        ..RegistryOptions::new(&account)
    });
    let mut info = serde_json::json!({
        "host": reg.host(),
        "url": reg.url(),
        "account": reg.account(),
        "user": reg.user(),
        "password": reg.password(),
        "creds": reg.creds(),
        "auth_header": reg.auth_header(),
        "pid": std::process::id(),
        "registry_pid": reg.pid(),
        "dir": reg.dir(),
        "log": reg.log_path(),
    });
    if tls {
        let ca = rig::rig_tls();
        info["ca"] = serde_json::json!(ca.ca_path());
        info["ca_bundle"] = serde_json::json!(ca.bundle_path());
        info["cert_dir"] = serde_json::json!(ca.cert_dir());
    }
    println!("{info}");
    let died = rt.block_on(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = term.recv() => return None,
                _ = int.recv() => return None,
                _ = hup.recv() => return None,
                _ = tick.tick() => if let Some(status) = reg.exited() { return Some(status) },
            }
        }
    });
    if let Some(status) = died {
        eprintln!(
            "docker-registry exited by itself ({status}); log:\n{}",
            reg.log()
        );
        drop(reg);
        std::process::exit(1);
    }
}
