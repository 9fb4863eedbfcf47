#!/usr/bin/env bash
# Builds the release binaries the benchmark runs (ecr-bridge, the rig, the
# image replicator for its cold start), then prints issue 7's table (see
# scripts/bench.py). Arguments go to bench.py: --quick, --runs N, --starts N,
# --only copy,tls,cold,zip,access,quota,backfill,reconcile, --backfill-sizes
# 1000,10000 (row 10's registry sizes; default 1000,10000,50000),
# --reconcile-sizes 1000,10000 (row 11's users; default 1000,10000,50000; the
# reconcile section builds the release access-sync itself). BENCH_ZIP=0 skips
# the arm64 zip build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ecr-bridge-cli -p ecr-bridge-tests -p image-replicator \
    --bin ecr-bridge --bin rig --bin image-replicator
# The zip rows cross-build for arm64 (Lambda's Graviton): rustup's target must be there.
if [ "${BENCH_ZIP:-1}" != 0 ] && command -v rustup >/dev/null \
    && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
fi
exec python3 scripts/bench.py "$@"
