#!/usr/bin/env bash
# The image replicator through the real Lambda runtime API: `cargo lambda
# watch` runs the function, `cargo lambda invoke --data-file events/...`
# sends each sample event, and the outcome of each is asserted. Local
# stand-ins: moto (AWS APIs) and one docker-registry per account.
#
# Usage: scripts/lambda-invoke.sh        (CI runs it after the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS="${ECR_BRIDGE_TOOLS:-$HOME/.cache/ecr-bridge}"
export PATH="$TOOLS/lambda-venv/bin:$PATH"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RIG="$TARGET_DIR/debug/rig"
WORK=$(mktemp -d /tmp/ecr-bridge-invoke.XXXXXX)   # outside the tree: watch must not see it
PIDS=()

log() { printf '[invoke] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

command -v cargo-lambda >/dev/null || fail "cargo-lambda missing: run scripts/setup.sh"
[ -x "$RIG" ] || cargo build -q -p ecr-bridge-tests --bin rig

# --- stand-ins ---------------------------------------------------------------
MOTO_PORT=$(free_port)
"$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
for acct in 123456789012 222222222222; do
    "$RIG" registry --account "$acct" >"$WORK/reg-$acct.json" 2>"$WORK/reg-$acct.err" &
    PIDS+=($!)
done
for i in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && [ -s "$WORK/reg-123456789012.json" ] && [ -s "$WORK/reg-222222222222.json" ] && break
    sleep 0.1
done
SRC_HOST=$(json "$WORK/reg-123456789012.json" '["host"]'); SRC_CREDS=$(json "$WORK/reg-123456789012.json" '["creds"]')
DST_HOST=$(json "$WORK/reg-222222222222.json" '["host"]'); DST_CREDS=$(json "$WORK/reg-222222222222.json" '["creds"]')
log "moto on :$MOTO_PORT, source registry $SRC_HOST, target registry $DST_HOST"

# --- a source image -------------------------------------------------------------
"$RIG" build-image --out "$WORK/img" --tag 2501.0001 --layers 4M,1M,64K --seed 42 >"$WORK/layout.json"
DIGEST=$(json "$WORK/layout.json" '["digest"]')
skopeo copy --quiet --preserve-digests --dest-tls-verify=false --dest-creds "$SRC_CREDS" \
    "oci:$WORK/img:2501.0001" "docker://$SRC_HOST/kuali-coeus:2501.0001"
log "pushed kuali-coeus:2501.0001 = $DIGEST"

# The sample events, pointed at that image (the samples' digests are placeholders).
for f in image-push-tagged image-push-untagged image-delete image-push-failure image-scan; do
    python3 - "$ROOT/events/$f.json" "$WORK/$f.json" "$DIGEST" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))
if "image-digest" in e["detail"]:
    e["detail"]["image-digest"] = sys.argv[3]
json.dump(e, open(sys.argv[2], "w"))
EOF
done
printf '{"source":"aws.ecr","detail-type":"ECR Image Action","account":"123","region":"us-east-1","detail":{}}' >"$WORK/malformed.json"

MAPPING=$(cat <<EOF
{"rules":[{"name":"kuali-coeus","match":{"exact":"kuali-coeus"},"propagate_deletes":true,
  "create_repository":{"tag_mutability":"MUTABLE","scan_on_push":true},
  "destinations":[{"account":"222222222222","region":"us-east-1",
    "role_arn":"arn:aws:iam::222222222222:role/ecr-bridge-push","external_id":"kuali-sync","repository":"coeus"}]}]}
EOF
)

# --- the function under cargo lambda watch ----------------------------------------
INVOKE_PORT=$(free_port)
log "cargo lambda watch on :$INVOKE_PORT (first invoke compiles the function)"
# An env file, not --env-var: the mapping JSON is full of commas.
{
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT"
    echo "AWS_ACCESS_KEY_ID=AKIDLOCAL"
    echo "AWS_SECRET_ACCESS_KEY=local-secret"
    echo "AWS_REGION=us-east-1"
    echo "REGISTRY_ENDPOINTS='123456789012.dkr.ecr.us-east-1.amazonaws.com=http://$SRC_HOST,222222222222.dkr.ecr.us-east-1.amazonaws.com=http://$DST_HOST'"
    echo "MAPPING_JSON='$(echo "$MAPPING" | tr -d '\n')'"   # single quotes: literal in dotenv
    echo "RUST_LOG=info"
} >"$WORK/function.env"
cargo lambda watch --quiet --ignore-changes -A 127.0.0.1 -P "$INVOKE_PORT" --env-file "$WORK/function.env" \
    >"$WORK/watch.log" 2>&1 &
WATCH=$!
PIDS+=($WATCH)
for i in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$INVOKE_PORT") 2>/dev/null && break
    kill -0 "$WATCH" 2>/dev/null || { cat "$WORK/watch.log"; fail "cargo lambda watch exited"; }
    sleep 0.2
done

invoke() { # file -> prints the function's answer; exit status of cargo lambda invoke
    cargo lambda invoke image-replicator -A 127.0.0.1 -P "$INVOKE_PORT" --data-file "$WORK/$1" --output-format json
}

# Warm-up compile happens on the first invoke; time the second replication separately.
OUT=$(invoke image-push-tagged.json) || { tail -50 "$WORK/watch.log"; fail "tagged push invoke failed"; }
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o["result"]=="done" and o["destinations"][0]["outcome"]=="replicated", o' \
    || fail "tagged push: $OUT"
GOT=$(skopeo inspect --raw --tls-verify=false --creds "$DST_CREDS" "docker://$DST_HOST/coeus:2501.0001" | sha256sum | cut -d' ' -f1)
[ "sha256:$GOT" = "$DIGEST" ] || fail "target digest sha256:$GOT != $DIGEST"
log "tagged push: replicated, coeus:2501.0001 = $DIGEST in account 222222222222"

T0=$(date +%s%N)
OUT=$(invoke image-push-untagged.json) || fail "untagged push invoke failed"
T1=$(date +%s%N)
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o["destinations"][0]["outcome"]=="up_to_date", o' \
    || fail "untagged push: $OUT"
log "untagged push of the same digest: up_to_date in $(( (T1 - T0) / 1000000 )) ms through the runtime API"

# A second image, replicated by the now-warm function: the time a user sees.
"$RIG" build-image --out "$WORK/img2" --tag 2501.0002 --layers 16M,4M,1M --seed 43 >"$WORK/layout2.json"
DIGEST2=$(json "$WORK/layout2.json" '["digest"]')
BYTES2=$(json "$WORK/layout2.json" '["total_blob_bytes"]')
skopeo copy --quiet --preserve-digests --dest-tls-verify=false --dest-creds "$SRC_CREDS" \
    "oci:$WORK/img2:2501.0002" "docker://$SRC_HOST/kuali-coeus:2501.0002"
python3 - "$WORK/image-push-tagged.json" "$WORK/second.json" "$DIGEST2" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); e["detail"]["image-digest"] = sys.argv[3]; e["detail"]["image-tag"] = "2501.0002"
json.dump(e, open(sys.argv[2], "w"))
EOF
T0=$(date +%s%N)
OUT=$(invoke second.json) || fail "second push invoke failed"
T1=$(date +%s%N)
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o["destinations"][0]["outcome"]=="replicated", o' \
    || fail "second push: $OUT"
log "second image ($BYTES2 bytes, 3 layers): replicated in $(( (T1 - T0) / 1000000 )) ms end to end through the runtime API"

OUT=$(invoke image-push-failure.json) || fail "failure event invoke failed"
echo "$OUT" | grep -q '"ignored"' || fail "FAILURE result: $OUT"
OUT=$(invoke image-scan.json) || fail "scan event invoke failed"
echo "$OUT" | grep -q '"ignored"' || fail "ECR Image Scan: $OUT"
log "FAILURE result and ECR Image Scan: ignored"

OUT=$(invoke image-delete.json) || fail "delete invoke failed"
# moto holds no image record for the bytes in docker-registry: the delete is a no-op there.
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o["destinations"][0]["outcome"] in ("deleted","already_deleted"), o' \
    || fail "delete: $OUT"
log "delete: propagated ($(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["destinations"][0]["outcome"])'))"

if OUT=$(invoke malformed.json 2>&1); then fail "malformed event was accepted: $OUT"; fi
echo "$OUT" | grep -q "InvalidEvent" || fail "malformed event: unexpected error: $OUT"
log "malformed event: rejected as InvalidEvent"

if grep -q "$(echo -n "$DST_CREDS" | base64)" "$WORK/watch.log" || grep -q "local-secret" "$WORK/watch.log"; then
    fail "credentials found in the function's log"
fi
log "5 sample events, a second image and a malformed event: all outcomes as expected; no credentials in the log"
echo "lambda-invoke: 7 passed, 0 failed"
