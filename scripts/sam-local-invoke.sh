#!/usr/bin/env bash
# `sam build` and `sam local invoke` of both functions, on this machine:
#   1. the invoke image: this machine cannot pull images, so a Debian 12
#      minbase root filesystem (debootstrap) is loaded with `docker import`,
#      once, and reused (scripts/lib/invoke-image.sh); SAM adds its own
#      runtime emulator (aws-lambda-rie) on top;
#   2. `sam build` of template.yaml for this machine's architecture into a
#      directory outside the tree (cargo-lambda/zig, release profile);
#   3. the local stand-ins (moto + one docker-registry per account), the
#      mapping in SSM, a users table with one row;
#   4. `sam local invoke ImageReplicatorFunction` on events/image-push-tagged.json
#      (pointed at a pushed image) and `sam local invoke AccessSyncFunction` on
#      events/dynamodb-insert.json, with --invoke-image, --docker-network host
#      and --env-vars; the results are checked in the registries and in moto.
# Anything that cannot run fails the script, with a message; nothing is skipped.
# Ends with "sam-local-invoke: N passed, M failed".
#
# Usage: scripts/sam-local-invoke.sh      (needs docker, root for the first
#        image build, and what scripts/setup.sh installs, plus debootstrap)
#   KEEP_WORK=1   keep the work directory (sam output, logs) for a look
set -euo pipefail
LOG_TAG=sam-local-invoke
source "$(dirname "$0")/lib/stand-ins.sh"
source "$(dirname "$0")/lib/invoke-image.sh"

SAM_VENV="$TOOLS/sam-venv"
SAM_PY="$SAM_VENV/bin/python"
HOST_NETWORK_SAM="$ROOT/scripts/lib/sam-host-network.py"
REGION=us-east-1

passed=0
fail() {
    log "FAIL: $*"
    echo "sam-local-invoke: $passed passed, 1 failed"
    exit 1
}
ok() {
    passed=$((passed + 1))
    log "ok: $*"
}
now_ms() { date +%s%3N; }
since() { echo "$(( $(now_ms) - $1 )) ms"; }

# The Lambda containers of this run, by the ids SAM logs (SAM removes them
# itself after each invoke; this is for a run interrupted mid-invoke).
remove_containers() {
    local id
    for id in $(sed -n 's/.*SAM_CONTAINER_ID: \([0-9a-f]\{12,\}\).*/\1/p' "$WORK"/*.log 2>/dev/null); do
        docker rm -f "$id" >/dev/null 2>&1 || true
    done
}

# ---- what must be there ---------------------------------------------------
case "$(uname -m)" in
    x86_64) ARCH=x86_64 ;;
    aarch64 | arm64) ARCH=arm64 ;; # sam build's Architecture parameter: the binary must run here
    *) fail "unsupported machine architecture $(uname -m) (Lambda has x86_64 and arm64)" ;;
esac
trap 'remove_containers; cleanup' EXIT
ensure_tools
[ -x "$SAM_VENV/bin/sam" ] || fail "SAM CLI missing ($SAM_VENV): run scripts/setup.sh"
command -v docker >/dev/null || fail "docker CLI missing: sam local invoke needs a container engine"
docker info >/dev/null 2>&1 || fail "docker engine not reachable: $(docker info 2>&1 | tail -1)"
command -v skopeo >/dev/null || fail "skopeo missing: run scripts/setup.sh"

# sam, always in the same controlled environment: fake credentials (never
# anyone's real ones; SAM passes them into the container), no config files,
# no telemetry, and nothing else from this shell (SAM copies the shell's value
# of every variable the template declares into the function). SAM's own AWS
# calls (`local invoke` asks STS for the account id) go to moto once it runs,
# and before that to a closed loopback port: never to AWS.
SAM_AWS_ENDPOINT=http://127.0.0.1:9
sam() {
    env -i PATH="$TOOLS/lambda-venv/bin:$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" \
        ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} ${DOCKER_CONFIG:+DOCKER_CONFIG="$DOCKER_CONFIG"} \
        AWS_ACCESS_KEY_ID=AKIDLOCAL AWS_SECRET_ACCESS_KEY=local-secret AWS_REGION=$REGION \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
        AWS_ENDPOINT_URL="$SAM_AWS_ENDPOINT" \
        SAM_CLI_TELEMETRY=0 LANG=C.UTF-8 "$SAM_PY" "$HOST_NETWORK_SAM" "$@"
}

# ---- 1. the invoke image ----------------------------------------------------
T=$(now_ms)
ensure_invoke_image
if [ "$INVOKE_IMAGE_BUILT" = 1 ]; then
    # SAM's image derived from the previous one (ours + aws-lambda-rie,
    # tagged <repository>:rapid-<arch>) is stale: drop it, and with it the
    # previous image (the replicator's invoke below derives a new one).
    docker image rm -f "${INVOKE_IMAGE%%:*}:rapid-$ARCH" >/dev/null 2>&1 || true
    ok "invoke image $INVOKE_IMAGE built ($(since "$T"))"
else
    ok "invoke image $INVOKE_IMAGE reused ($(since "$T"))"
fi

# ---- 2. sam build ------------------------------------------------------------
BUILD="$WORK/sam-build"
T=$(now_ms)
log "sam build --parameter-overrides Architecture=$ARCH (a cold build compiles both functions: minutes)"
(cd "$ROOT" && sam build -t template.yaml -b "$BUILD" --parameter-overrides "Architecture=$ARCH") \
    >"$WORK/sam-build.log" 2>&1 || { tail -40 "$WORK/sam-build.log" >&2; fail "sam build failed (log above)"; }
for f in ImageReplicatorFunction AccessSyncFunction; do
    [ -x "$BUILD/$f/bootstrap" ] || fail "sam build produced no $BUILD/$f/bootstrap"
    case "$ARCH:$(od -An -tx1 -j18 -N2 "$BUILD/$f/bootstrap" | tr -d ' ')" in
        x86_64:3e00 | arm64:b700) ;;
        *) fail "$f/bootstrap is not an $ARCH ELF binary" ;;
    esac
done
ok "sam build: ImageReplicatorFunction and AccessSyncFunction, $ARCH ($(since "$T"))"

# ---- 3. stand-ins and what the functions read ---------------------------------
start_moto
start_registry 123456789012
start_registry 222222222222
SRC_HOST=$REG_HOST_123456789012
DST_HOST=$REG_HOST_222222222222
SAM_AWS_ENDPOINT=$MOTO_URL
log "moto on :$MOTO_PORT, source registry $SRC_HOST, target registry $DST_HOST"
push_image 2501.0001 kuali-coeus 42 4M,1M,64K
SOURCE_DIGEST=$DIGEST
log "pushed kuali-coeus:2501.0001 = $SOURCE_DIGEST"
sample_event image-push-tagged push.json "$SOURCE_DIGEST" 2501.0001

MAPPING='{"rules":[{"name":"kuali-coeus","match":{"exact":"kuali-coeus"},
  "create_repository":{"tag_mutability":"IMMUTABLE","scan_on_push":true},
  "destinations":[{"account":"222222222222","region":"us-east-1",
    "role_arn":"arn:aws:iam::222222222222:role/ecr-bridge-push","external_id":"kuali-sync","repository":"coeus"}]}]}'
{ local_aws put-mapping /ecr-bridge/mapping "$MAPPING" &&
  local_aws create-users-table &&
  local_aws put-row user1@username.com ws-0001 111111111111 active; } ||   # the row events/dynamodb-insert.json announces
    fail "could not store the mapping and the users table in moto"

# --env-vars: per function logical id. SAM passes only variables that
# template.yaml declares (AWS_ENDPOINT_URL and REGISTRY_ENDPOINTS are declared
# there as AWS::NoValue: set here, never when deployed). Credentials and
# region come from sam's own environment (see sam() above).
python3 - "$WORK/env.json" <<EOF
import json, sys
endpoint = "$MOTO_URL"
json.dump({
    "ImageReplicatorFunction": {
        "AWS_ENDPOINT_URL": endpoint,
        "REGISTRY_ENDPOINTS": "123456789012.dkr.ecr.us-east-1.amazonaws.com=http://$SRC_HOST,"
                              "222222222222.dkr.ecr.us-east-1.amazonaws.com=http://$DST_HOST",
        "MAPPING_PARAMETER": "/ecr-bridge/mapping",
        # Locally SAM cannot resolve !Ref BackfillQueue or BackfillRunTable;
        # a push event never uses them.
        "BACKFILL_QUEUE_URL": endpoint + "/123456789012/ecr-bridge-backfill",
        "BACKFILL_TABLE": "ecr-bridge-backfill-runs",
        "RUST_LOG": "info",
    },
    "AccessSyncFunction": {
        "AWS_ENDPOINT_URL": endpoint,
        "TABLE_NAME": "gen3-pay-models",
        "ECR_ROLE_ARN": "arn:aws:iam::222222222222:role/ecr-bridge-access-policy",
        "ECR_REGION": "us-east-1",
        "MISSING_REPOSITORY": "create",
        # Locally SAM cannot resolve !Ref ReconcileQueue or ReconcileRunTable:
        # unset (empty), a full reconcile runs whole in one invocation.
        "RECONCILE_QUEUE_URL": "",
        "RECONCILE_TABLE": "",
        "RUST_LOG": "info",
    },
}, open(sys.argv[1], "w"), indent=2)
EOF

# ---- 4. sam local invoke ------------------------------------------------------
# local_invoke FUNCTION EVENT OUT [extra sam options]: response in OUT.json, logs in OUT.log
local_invoke() {
    local fn=$1 event=$2 out=$3
    shift 3
    local t
    t=$(now_ms)
    if ! sam local invoke "$fn" -t "$BUILD/template.yaml" -e "$event" \
        --env-vars "$WORK/env.json" --invoke-image "$INVOKE_IMAGE" --skip-pull-image \
        --docker-network host --region "$REGION" --parameter-overrides "Architecture=$ARCH" "$@" \
        >"$WORK/$out.json" 2>"$WORK/$out.log"; then
        cat "$WORK/$out.log" >&2
        fail "sam local invoke $fn exited non-zero (its output above)"
    fi
    INVOKE_MS=$(( $(now_ms) - t ))
    # The functions hold the SDK's HTTP layer at DEBUG and the runtime
    # emulator does not filter by level as Lambda does: show the rest.
    printf '\n---- sam local invoke %s -e %s (stderr; %s DEBUG lines left out) ----\n' \
        "$fn" "${event#"$WORK"/}" "$(grep -c '"level":"DEBUG"' "$WORK/$out.log" || true)" >&2
    grep -v '"level":"DEBUG"' "$WORK/$out.log" >&2 || true
    printf -- '---- response (stdout) ----\n%s\n\n' "$(cat "$WORK/$out.json")" >&2
}

# The replicator first, with --force-image-build: SAM re-derives its image
# (ours + the aws-lambda-rie of the installed SAM) instead of reusing one an
# older SAM made; docker's build cache makes that about a second when nothing
# changed. (--skip-pull-image: there is no registry to check for a newer base.)
local_invoke ImageReplicatorFunction "$WORK/push.json" replicator --force-image-build
OUTCOME=$(python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); print(o["destinations"][0]["outcome"] if "destinations" in o else o)' \
    "$WORK/replicator.json" 2>/dev/null) || fail "replicator answered no JSON: $(cat "$WORK/replicator.json")"
[ "$OUTCOME" = replicated ] || fail "replicator: outcome $OUTCOME, expected replicated"
ok "sam local invoke ImageReplicatorFunction: replicated ($INVOKE_MS ms)"

GOT="sha256:$(skopeo inspect --raw --tls-verify=false --creds "$REG_CREDS_222222222222" \
    "docker://$DST_HOST/coeus:2501.0001" | sha256sum | cut -d' ' -f1)"
[ "$GOT" = "$SOURCE_DIGEST" ] || fail "target coeus:2501.0001 is $GOT, source is $SOURCE_DIGEST"
ok "coeus:2501.0001 in account 222222222222 = $SOURCE_DIGEST, byte for byte (skopeo)"

cp "$ROOT/events/dynamodb-insert.json" "$WORK/insert.json"
local_invoke AccessSyncFunction "$WORK/insert.json" access-sync
FAILURES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["batchItemFailures"])' \
    "$WORK/access-sync.json" 2>/dev/null) || fail "access sync answered: $(cat "$WORK/access-sync.json")"
[ "$FAILURES" = "[]" ] || fail "access sync: batchItemFailures $FAILURES, expected []"
ok "sam local invoke AccessSyncFunction: batchItemFailures [] ($INVOKE_MS ms)"

GRANTED=$(local_aws granted arn:aws:iam::222222222222:role/ecr-bridge-access-policy nextflow-approved/user1-40username-2ecom)
[ "$GRANTED" = 111111111111 ] || \
    fail "the repository policy of nextflow-approved/user1-40username-2ecom is not what access sync should write"
ok "repository policy of nextflow-approved/user1-40username-2ecom in 222222222222 grants arn:aws:iam::111111111111:root"

if grep -q "local-secret" "$WORK/replicator.log" "$WORK/access-sync.log"; then
    fail "the secret access key appears in a function's log"
fi
ok "no credentials in either function's log"

echo "sam-local-invoke: $passed passed, 0 failed"
