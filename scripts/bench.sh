#!/usr/bin/env bash
# Builds release binaries and runs the copy benchmark (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ecr-bridge-cli -p ecr-bridge-tests --bin ecr-bridge --bin rig
exec python3 scripts/bench.py "$@"
