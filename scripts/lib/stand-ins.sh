# Local stand-ins for AWS, shared by scripts/demo.sh and scripts/lambda-invoke.sh
# (source it; it defines functions and cleans up on exit):
#   start_moto                 moto_server on a free port      -> MOTO_PORT, MOTO_URL
#   start_registry ACCOUNT     docker-registry for an account  -> REG_HOST_<ACCOUNT>, REG_CREDS_<ACCOUNT>
#   push_image TAG REPO SEED LAYERS  build a test image, push it to 123456789012's registry -> DIGEST
#   start_watch ENV_FILE       cargo lambda watch on a free port -> INVOKE_PORT
#   invoke FUNCTION FILE       cargo lambda invoke; prints the answer
# Work files live in $WORK, outside the tree (cargo lambda watch must not see them).

TOOLS="${ECR_BRIDGE_TOOLS:-$HOME/.cache/ecr-bridge}"
export PATH="$TOOLS/lambda-venv/bin:$PATH"
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RIG="$TARGET_DIR/debug/rig"
WORK=$(mktemp -d /tmp/ecr-bridge.XXXXXX)
PIDS=()

# Bold on a terminal only: piped output stays plain text.
if [ -t 2 ]; then
    say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    say() { printf '==> %s\n' "$*" >&2; }
fi
log() { printf '[%s] %s\n' "${LOG_TAG:-stand-ins}" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_get() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

ensure_tools() {
    command -v cargo-lambda >/dev/null || fail "cargo-lambda missing: run scripts/setup.sh"
    [ -x "$TOOLS/venv/bin/moto_server" ] || fail "moto missing: run scripts/setup.sh"
    [ -x "$RIG" ] || cargo build -q -p ecr-bridge-tests --bin rig
}

start_moto() {
    MOTO_PORT=$(free_port)
    MOTO_URL="http://127.0.0.1:$MOTO_PORT"
    # moto_server with DynamoDB's Query by hash key (see the file).
    "$TOOLS/venv/bin/python" "$ROOT/scripts/lib/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 150); do
        curl -sf "$MOTO_URL/moto-api/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "moto did not start: $(tail -5 "$WORK/moto.log")"
}

start_registry() {
    local acct=$1
    "$RIG" registry --account "$acct" >"$WORK/reg-$acct.json" 2>"$WORK/reg-$acct.err" &
    PIDS+=($!)
    for _ in $(seq 1 150); do
        [ -s "$WORK/reg-$acct.json" ] && break
        sleep 0.1
    done
    [ -s "$WORK/reg-$acct.json" ] || fail "registry for $acct did not start: $(cat "$WORK/reg-$acct.err")"
    printf -v "REG_HOST_$acct" '%s' "$(json_get "$WORK/reg-$acct.json" '["host"]')"
    printf -v "REG_CREDS_$acct" '%s' "$(json_get "$WORK/reg-$acct.json" '["creds"]')"
}

# push_image TAG REPO SEED LAYERS: a deterministic test image into account 123456789012's registry.
push_image() {
    local tag=$1 repo=$2 seed=$3 layers=$4
    local dir="$WORK/img-$seed"
    "$RIG" build-image --out "$dir" --tag "$tag" --layers "$layers" --seed "$seed" >"$dir.json"
    DIGEST=$(json_get "$dir.json" '["digest"]')
    BYTES=$(json_get "$dir.json" '["total_blob_bytes"]')
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false --dest-creds "$REG_CREDS_123456789012" \
        "oci:$dir:$tag" "docker://$REG_HOST_123456789012/$repo:$tag"
}

# sample_event NAME OUT [DIGEST [TAG]]: events/NAME.json pointed at a pushed image.
sample_event() {
    python3 - "$ROOT/events/$1.json" "$WORK/$2" "${3:-}" "${4:-}" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))
if sys.argv[3] and "image-digest" in e.get("detail", {}):
    e["detail"]["image-digest"] = sys.argv[3]
if sys.argv[4]:
    e["detail"]["image-tag"] = sys.argv[4]
json.dump(e, open(sys.argv[2], "w"))
EOF
}

start_watch() {
    INVOKE_PORT=$(free_port)
    cargo lambda watch --quiet --ignore-changes -A 127.0.0.1 -P "$INVOKE_PORT" --env-file "$1" \
        >"$WORK/watch.log" 2>&1 &
    local watch=$!
    PIDS+=($watch)
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$INVOKE_PORT") 2>/dev/null && return 0
        kill -0 "$watch" 2>/dev/null || { cat "$WORK/watch.log" >&2; fail "cargo lambda watch exited"; }
        sleep 0.2
    done
    fail "cargo lambda watch did not listen on $INVOKE_PORT"
}

invoke() {
    cargo lambda invoke "$1" -A 127.0.0.1 -P "$INVOKE_PORT" --data-file "$WORK/$2" --output-format json
}

# local_aws OP ARGS...: AWS calls against moto (see scripts/lib/local_aws.py).
local_aws() {
    AWS_ACCESS_KEY_ID=AKIDLOCAL AWS_SECRET_ACCESS_KEY=local-secret \
        "$TOOLS/venv/bin/python" "$ROOT/scripts/lib/local_aws.py" "$MOTO_URL" "$@"
}

# restart_watch_for_access_sync ENV_FILE: add access sync's settings (the
# table gen3-pay-models, policies in 222222222222 through its role) and
# restart cargo lambda watch, which reads its env file only at start.
restart_watch_for_access_sync() {
    printf '%s\n' TABLE_NAME=gen3-pay-models \
        ECR_ROLE_ARN=arn:aws:iam::222222222222:role/ecr-bridge-access-policy \
        ECR_REGION=us-east-1 MISSING_REPOSITORY=create >>"$1"
    kill "${PIDS[-1]}" 2>/dev/null
    wait "${PIDS[-1]}" 2>/dev/null || true
    start_watch "$1"
}
