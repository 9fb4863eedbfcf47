#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmark need, on a fresh
# Debian machine or this one again (each step is skipped when already done).
#   - Debian: docker-registry (the real registry), skopeo (peer and oracle),
#     apache2-utils (htpasswd), curl, time (/usr/bin/time -v for peak RSS),
#     debootstrap (the local root filesystem sam local invoke runs functions in)
#   - cargo-nextest (test runner) when missing
#   - moto[server] (AWS API stand-in) in its own venv under
#     $ECR_BRIDGE_TOOLS (default ~/.cache/ecr-bridge), kept between runs
#   - cargo-lambda (brings zig for cross builds) in a venv of its own there
#   - aws-sam-cli and cfn-lint (template checks) in a third venv there
# With --demo, only what make demo uses: the registry, skopeo, htpasswd,
# curl, moto and cargo-lambda.
set -euo pipefail
DEMO_ONLY=false
[ "${1:-}" = --demo ] && DEMO_ONLY=true

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
command -v curl >/dev/null || need_apt+=(curl)
if ! $DEMO_ONLY; then
    [ -x /usr/bin/time ] || need_apt+=(time)
    command -v debootstrap >/dev/null || need_apt+=(debootstrap)   # scripts/sam-local-invoke.sh builds its invoke image
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

TOOLS="${ECR_BRIDGE_TOOLS:-$HOME/.cache/ecr-bridge}"
if [ ! -x "$TOOLS/venv/bin/moto_server" ]; then
    log "python venv with moto[server] in $TOOLS/venv"
    mkdir -p "$TOOLS"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
fi

if [ ! -x "$TOOLS/lambda-venv/bin/cargo-lambda" ]; then
    log "python venv with cargo-lambda in $TOOLS/lambda-venv"
    python3 -m venv "$TOOLS/lambda-venv"
    "$TOOLS/lambda-venv/bin/pip" install -q --disable-pip-version-check 'cargo-lambda>=1.8,<2'
fi

if $DEMO_ONLY; then
    log "ready for the demo: $(docker-registry --version 2>/dev/null | awk '{print $2, $3}'), $(skopeo --version), moto $("$TOOLS/venv/bin/python" -c 'import moto; print(moto.__version__)'), $("$TOOLS/lambda-venv/bin/cargo-lambda" lambda --version)"
    exit 0
fi

if [ ! -x "$TOOLS/sam-venv/bin/sam" ] || [ ! -x "$TOOLS/sam-venv/bin/cfn-lint" ]; then
    log "python venv with aws-sam-cli and cfn-lint in $TOOLS/sam-venv"
    python3 -m venv "$TOOLS/sam-venv"
    "$TOOLS/sam-venv/bin/pip" install -q --disable-pip-version-check 'aws-sam-cli>=1.170,<2' 'cfn-lint>=1.58,<2'
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo install cargo-nextest"
    cargo install --locked cargo-nextest
fi
log "ready: $(docker-registry --version 2>/dev/null | awk '{print $2, $3}'), $(skopeo --version), moto $("$TOOLS/venv/bin/python" -c 'import moto; print(moto.__version__)'), $("$TOOLS/lambda-venv/bin/cargo-lambda" lambda --version), $("$TOOLS/sam-venv/bin/sam" --version), $(cargo nextest --version | head -1)"
