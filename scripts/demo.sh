#!/usr/bin/env bash
# The whole job, locally: two "accounts" (a docker-registry each), moto
# standing in for the AWS APIs, the replicator run by the Lambda runtime
# emulator (cargo lambda watch) on the sample event from events/. About 20 s
# once the functions are built; the first build takes a few minutes.
#
# Usage: make demo     (installs what is missing first: scripts/setup.sh --demo)
set -euo pipefail
LOG_TAG=demo
source "$(dirname "$0")/lib/stand-ins.sh"
ensure_tools
STARTED=$SECONDS

# cargo lambda watch would build them at the first invoke, silently (its log
# goes to a file): built here, cargo's progress shows.
say "Building both functions (the first build takes a few minutes)"
cargo build -p image-replicator -p access-sync

say "Starting local stand-ins"
start_moto
start_registry 123456789012
start_registry 222222222222
SRC=$REG_HOST_123456789012
DST=$REG_HOST_222222222222
echo "  moto (ECR, STS, SSM, DynamoDB)     $MOTO_URL"
echo "  registry of account 123456789012   http://$SRC   (the source)"
echo "  registry of account 222222222222   http://$DST   (the target, reached through a role)"

say "Pushing a multi-arch image to 123456789012: kuali-coeus:2501.0001"
DIR="$WORK/img"
"$RIG" build-image --out "$DIR" --tag 2501.0001 --layers 8M,2M,256K --platforms linux/amd64,linux/arm64 --shared 1 --seed 7 >"$DIR.json"
DIGEST=$(json_get "$DIR.json" '["digest"]')
skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false --dest-creds "$REG_CREDS_123456789012" \
    "oci:$DIR:2501.0001" "docker://$SRC/kuali-coeus:2501.0001"
echo "  $DIGEST  ($(json_get "$DIR.json" '["total_blob_bytes"]') bytes in $(json_get "$DIR.json" '["blobs"].__len__()') blobs)"

say "Storing the mapping in SSM: kuali-coeus -> coeus in account 222222222222"
MAPPING='{"rules":[{"name":"kuali-coeus","match":{"exact":"kuali-coeus"},
  "create_repository":{"tag_mutability":"IMMUTABLE","scan_on_push":true},
  "destinations":[{"account":"222222222222","region":"us-east-1",
    "role_arn":"arn:aws:iam::222222222222:role/ecr-bridge-push","external_id":"kuali-sync","repository":"coeus"}]}]}'
local_aws put-mapping /ecr-bridge/mapping "$MAPPING"
echo "  /ecr-bridge/mapping: {\"exact\": \"kuali-coeus\"} -> coeus"

say "Starting the replicator under the Lambda runtime emulator (cargo lambda watch)"
cat >"$WORK/function.env" <<EOF
AWS_ENDPOINT_URL=$MOTO_URL
AWS_ACCESS_KEY_ID=AKIDLOCAL
AWS_SECRET_ACCESS_KEY=local-secret
AWS_REGION=us-east-1
MAPPING_PARAMETER=/ecr-bridge/mapping
REGISTRY_ENDPOINTS='123456789012.dkr.ecr.us-east-1.amazonaws.com=http://$SRC,222222222222.dkr.ecr.us-east-1.amazonaws.com=http://$DST'
RUST_LOG=info
EOF
start_watch "$WORK/function.env"

say "Invoking it with events/image-push-tagged.json (pointed at the pushed digest)"
sample_event image-push-tagged push.json "$DIGEST" 2501.0001
OUT=$(invoke image-replicator push.json) || { tail -30 "$WORK/watch.log"; fail "invoke failed"; }
OUT="$OUT" python3 - <<'EOF'
import json, os
d = json.loads(os.environ["OUT"])["destinations"][0]
r = d["report"]
print(f"  outcome {d['outcome']}: {d['account']}/{d['region']}/{d['repository']}, repository created: {d['created_repository']}")
print(f"  {r['manifests_copied']} manifests, {r['blobs_uploaded']} blobs, {r['bytes_uploaded']} bytes in {r['duration_ms']} ms")
EOF

say "Checking the target with skopeo: coeus:2501.0001 in account 222222222222"
GOT="sha256:$(skopeo inspect --raw --tls-verify=false --creds "$REG_CREDS_222222222222" "docker://$DST/coeus:2501.0001" | sha256sum | cut -d' ' -f1)"
echo "  source kuali-coeus:2501.0001  $DIGEST"
echo "  target coeus:2501.0001        $GOT"
[ "$GOT" = "$DIGEST" ] || fail "digests differ"
echo "  identical, byte for byte"
echo "  repository $(local_aws repository arn:aws:iam::222222222222:role/ecr-bridge-push coeus)"

say "Sending the same event again (EventBridge delivers at least once)"
OUT=$(invoke image-replicator push.json)
OUT="$OUT" python3 - <<'EOF'
import json, os
d = json.loads(os.environ["OUT"])["destinations"][0]
print(f"  outcome {d['outcome']}: {d['report']['blobs_uploaded']} blobs moved")
EOF

say "Access sync: a users table in 123456789012, user repositories in 222222222222"
local_aws create-users-table
# The row the sample stream record (events/dynamodb-insert.json) announces.
local_aws put-row user1@username.com ws-0001 111111111111 active
echo "  row: user1@username.com, Direct Pay, account 111111111111"
restart_watch_for_access_sync "$WORK/function.env"
cp "$ROOT/events/dynamodb-insert.json" "$WORK/insert.json"
OUT=$(invoke access-sync insert.json) || { tail -30 "$WORK/watch.log"; fail "access-sync invoke failed"; }
echo "  events/dynamodb-insert.json -> batchItemFailures: $(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["batchItemFailures"])')"
echo "  repository policy of nextflow-approved/user1-40username-2ecom in 222222222222:"
local_aws policy arn:aws:iam::222222222222:role/ecr-bridge-access-policy nextflow-approved/user1-40username-2ecom | sed 's/^/    /'

say "Demo passed in $((SECONDS - STARTED)) s: replicated byte for byte, a duplicate moved nothing, access granted; stopping the stand-ins"
