#!/usr/bin/env bash
# The image replicator through the real Lambda runtime API: `cargo lambda
# watch` runs the function, `cargo lambda invoke --data-file events/...`
# sends each sample event, and the outcome of each is asserted. Local
# stand-ins: moto (AWS APIs) and one docker-registry per account.
#
# Usage: scripts/lambda-invoke.sh        (make test runs it after the suite)
set -euo pipefail
LOG_TAG=invoke
source "$(dirname "$0")/lib/stand-ins.sh"
ensure_tools

start_moto
start_registry 123456789012
start_registry 222222222222
SRC_HOST=$REG_HOST_123456789012
DST_HOST=$REG_HOST_222222222222
DST_CREDS=$REG_CREDS_222222222222
log "moto on :$MOTO_PORT, source registry $SRC_HOST, target registry $DST_HOST"

push_image 2501.0001 kuali-coeus 42 4M,1M,64K
FIRST=$DIGEST
log "pushed kuali-coeus:2501.0001 = $FIRST"
for f in image-push-tagged image-push-untagged image-delete image-push-failure image-scan; do
    sample_event "$f" "$f.json" "$FIRST"
done
printf '{"source":"aws.ecr","detail-type":"ECR Image Action","account":"123","region":"us-east-1","detail":{}}' >"$WORK/malformed.json"

# An env file, not --env-var: the mapping JSON is full of commas. Values in
# single quotes are taken literally.
cat >"$WORK/function.env" <<EOF
AWS_ENDPOINT_URL=$MOTO_URL
AWS_ACCESS_KEY_ID=AKIDLOCAL
AWS_SECRET_ACCESS_KEY=local-secret
AWS_REGION=us-east-1
REGISTRY_ENDPOINTS='123456789012.dkr.ecr.us-east-1.amazonaws.com=http://$SRC_HOST,222222222222.dkr.ecr.us-east-1.amazonaws.com=http://$DST_HOST'
MAPPING_JSON='{"rules":[{"name":"kuali-coeus","match":{"exact":"kuali-coeus"},"propagate_deletes":true,"create_repository":{"tag_mutability":"MUTABLE","scan_on_push":true},"destinations":[{"account":"222222222222","region":"us-east-1","role_arn":"arn:aws:iam::222222222222:role/ecr-bridge-push","external_id":"kuali-sync","repository":"coeus"}]}]}'
RUST_LOG=info
EOF
log "cargo lambda watch (the first invoke compiles the function)"
start_watch "$WORK/function.env"

outcome() { python3 -c 'import json,sys; o=json.load(sys.stdin); print(o["destinations"][0]["outcome"] if "destinations" in o else o["result"])'; }

OUT=$(invoke image-replicator image-push-tagged.json) || { tail -50 "$WORK/watch.log"; fail "tagged push invoke failed"; }
[ "$(echo "$OUT" | outcome)" = replicated ] || fail "tagged push: $OUT"
GOT=$(skopeo inspect --raw --tls-verify=false --creds "$DST_CREDS" "docker://$DST_HOST/coeus:2501.0001" | sha256sum | cut -d' ' -f1)
[ "sha256:$GOT" = "$FIRST" ] || fail "target digest sha256:$GOT != $FIRST"
log "tagged push: replicated, coeus:2501.0001 = $FIRST in account 222222222222"

T0=$(date +%s%N)
OUT=$(invoke image-replicator image-push-untagged.json) || fail "untagged push invoke failed"
T1=$(date +%s%N)
[ "$(echo "$OUT" | outcome)" = up_to_date ] || fail "untagged push: $OUT"
log "untagged push of the same digest: up_to_date in $(( (T1 - T0) / 1000000 )) ms through the runtime API"

# A second image, replicated by the now-warm function: the time a user sees.
push_image 2501.0002 kuali-coeus 43 16M,4M,1M
sample_event image-push-tagged second.json "$DIGEST" 2501.0002
T0=$(date +%s%N)
OUT=$(invoke image-replicator second.json) || fail "second push invoke failed"
T1=$(date +%s%N)
[ "$(echo "$OUT" | outcome)" = replicated ] || fail "second push: $OUT"
log "second image ($BYTES bytes, 3 layers): replicated in $(( (T1 - T0) / 1000000 )) ms end to end through the runtime API"

for f in image-push-failure image-scan; do
    OUT=$(invoke image-replicator "$f.json") || fail "$f invoke failed"
    [ "$(echo "$OUT" | outcome)" = ignored ] || fail "$f: $OUT"
done
log "FAILURE result and ECR Image Scan: ignored"

OUT=$(invoke image-replicator image-delete.json) || fail "delete invoke failed"
# moto holds no image record for the bytes in docker-registry: the delete may find nothing.
case "$(echo "$OUT" | outcome)" in deleted|already_deleted) ;; *) fail "delete: $OUT" ;; esac
log "delete: propagated ($(echo "$OUT" | outcome))"

if OUT=$(invoke image-replicator malformed.json 2>&1); then fail "malformed event was accepted: $OUT"; fi
echo "$OUT" | grep -q "InvalidEvent" || fail "malformed event: unexpected error: $OUT"
log "malformed event: rejected as InvalidEvent"

if grep -q "$(echo -n "$DST_CREDS" | base64)" "$WORK/watch.log" || grep -q "local-secret" "$WORK/watch.log"; then
    fail "credentials found in the function's log"
fi
log "5 sample events, a second image and a malformed event: all outcomes as expected; no credentials in the log"
echo "lambda-invoke: 7 passed, 0 failed"
