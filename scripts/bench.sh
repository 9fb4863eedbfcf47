#!/usr/bin/env bash
# Builds the release binaries the benchmark runs (ecr-bridge, the rig, the
# image replicator for its cold start), then prints issue 7's table (see
# scripts/bench.py). Arguments go to bench.py: --quick, --runs N, --starts N,
# --only copy,cold,zip,access. BENCH_ZIP=0 skips the arm64 zip build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ecr-bridge-cli -p ecr-bridge-tests -p image-replicator \
    --bin ecr-bridge --bin rig --bin image-replicator
exec python3 scripts/bench.py "$@"
