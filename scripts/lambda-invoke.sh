#!/usr/bin/env bash
# The image replicator through the real Lambda runtime API: `cargo lambda
# watch` runs the function, `cargo lambda invoke --data-file events/...`
# sends each sample event, and the outcome of each is asserted. Local
# stand-ins: moto (AWS APIs) and one docker-registry per account.
#
# Also ecr-bridge backfill against the watch's Lambda Invoke API.
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
BACKFILL_QUEUE=$(local_aws create-queue ecr-bridge-backfill)
local_aws create-backfill-table ecr-bridge-backfill-runs
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
BACKFILL_QUEUE_URL=$BACKFILL_QUEUE
BACKFILL_TABLE=ecr-bridge-backfill-runs
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

# The source still has the tag: the delete is a late one and deletes nothing.
OUT=$(invoke image-replicator image-delete.json) || fail "late delete invoke failed"
[ "$(echo "$OUT" | outcome)" = source_still_has ] || fail "late delete: $OUT"
log "delete while the source still has the tag: source_still_has, nothing deleted"
skopeo delete --tls-verify=false --creds "$REG_CREDS_123456789012" "docker://$SRC_HOST/kuali-coeus@$FIRST" \
    || fail "deleting kuali-coeus@$FIRST in the source"
OUT=$(invoke image-replicator image-delete.json) || fail "delete invoke failed"
# moto holds no image record for the bytes in docker-registry: the delete may find nothing.
case "$(echo "$OUT" | outcome)" in deleted|already_deleted) ;; *) fail "delete: $OUT" ;; esac
log "delete: propagated ($(echo "$OUT" | outcome))"

if OUT=$(invoke image-replicator malformed.json 2>&1); then fail "malformed event was accepted: $OUT"; fi
echo "$OUT" | grep -q "InvalidEvent" || fail "malformed event: unexpected error: $OUT"
log "malformed event: rejected as InvalidEvent"

# --- backfill through the CLI: ecr-bridge backfill -> Lambda Invoke API (cargo lambda
# watch's) -> the replicator records a run (DynamoDB, moto) and enqueues a listing step
# on SQS (moto); drain-queue plays the SQS event source mapping, invoking the function
# per message (the listing step enqueues one work item per image; each work item
# copies or finds its image present); --wait follows the run's counts until done.
push_image 2501.0003 kuali-coeus 44 2M,512K
THIRD=$DIGEST
for t in 1 2 3; do local_aws record-image kuali-coeus 2501.000$t "$WORK/img-4$((t + 1)).json"; done
backfill() {
    AWS_ENDPOINT_URL="$MOTO_URL" AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$INVOKE_PORT" \
        AWS_ACCESS_KEY_ID=AKIDLOCAL AWS_SECRET_ACCESS_KEY=local-secret AWS_REGION=us-east-1 \
        "$TARGET_DIR/debug/ecr-bridge" backfill --function-name image-replicator "$@"
}
OUT=$(backfill --check --json) || fail "backfill --check: $OUT"
echo "$OUT" | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; assert (s["images_found"], s["already_present"], s["missing"], s["enqueued"]) == (3, 2, 1, 0), s' \
    || fail "backfill --check: $OUT"
log "ecr-bridge backfill --check: 3 images, 2 already present (replicated above), 1 missing"
local_aws drain-queue "$BACKFILL_QUEUE" "http://127.0.0.1:$INVOKE_PORT/2015-03-31/functions/image-replicator/invocations" >"$WORK/drain.out" &
DRAIN=$!
OUT=$(backfill --wait --poll-seconds 1 --json) || fail "backfill --wait: $OUT"
wait $DRAIN || fail "drain-queue failed"
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin)["outcome"]; assert (o["images_found"], o["already_present"], o["copied"], o["failed"]) == (3, 2, 1, 0), o' \
    || fail "backfill --wait: $OUT"
GOT=$(skopeo inspect --raw --tls-verify=false --creds "$DST_CREDS" "docker://$DST_HOST/coeus:2501.0003" | sha256sum | cut -d' ' -f1)
[ "sha256:$GOT" = "$THIRD" ] || fail "backfilled digest sha256:$GOT != $THIRD"
log "ecr-bridge backfill --wait: 1 listing step and 3 work items, $(cat "$WORK/drain.out"), 2 already present, copied 1, failed 0; coeus:2501.0003 = $THIRD"
OUT=$(backfill --json) || fail "second backfill: $OUT"
echo "$OUT" | python3 -c 'import json,sys; r=json.load(sys.stdin)["summary"]["run"]; assert (r["joined"], r["state"]) == (True, "finished"), r' \
    || fail "second backfill: $OUT"
log "ecr-bridge backfill again: the finished run of this scope is joined, nothing enqueued"

# The two backfill samples as they are (a check of kuali-coeus), and pointed at the third image.
cp "$ROOT/events/backfill-request.json" "$WORK/backfill-request.json"
OUT=$(invoke image-replicator backfill-request.json) || fail "backfill-request.json: $OUT"
echo "$OUT" | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; assert (s["images_found"], s["already_present"], s["missing"]) == (3, 3, 0), s' \
    || fail "backfill-request.json: $OUT"
python3 - "$ROOT/events/backfill-work-item.json" "$WORK/work-item.json" "$THIRD" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
body = json.loads(e["Records"][0]["body"])
body["detail"]["image-digest"] = sys.argv[3]
body["detail"]["image-tags"] = ["2501.0003"]
body["detail"]["image-tag"] = "2501.0003"
e["Records"][0]["body"] = json.dumps(body)
json.dump(e, open(sys.argv[2], "w"))
PY
OUT=$(invoke image-replicator work-item.json) || fail "backfill-work-item.json: $OUT"
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert (o["batchItemFailures"], o["done"]) == ([], 1), o' \
    || fail "backfill-work-item.json: $OUT"
log "backfill-request.json: 3 of 3 present; backfill-work-item.json: done, nothing to retry"

# --- access sync: every events/dynamodb-*.json and the scheduled reconcile ----------
# The function reads the table, not the record: each step first makes the
# table say what the sample record announces.
no_failures() { python3 -c 'import json,sys; o=json.load(sys.stdin); sys.exit(0 if o.get("batchItemFailures") == [] else 1)'; }
REPO=nextflow-approved/user1-40username-2ecom
POLICY_ROLE=arn:aws:iam::222222222222:role/ecr-bridge-access-policy
granted() { local_aws granted "$POLICY_ROLE" "$1"; }

local_aws create-users-table
local_aws put-row user1@username.com ws-0001 111111111111 active
restart_watch_for_access_sync "$WORK/function.env"
for f in dynamodb-insert dynamodb-modify dynamodb-remove dynamodb-batch-mixed scheduled-reconcile; do
    cp "$ROOT/events/$f.json" "$WORK/$f.json"
done

OUT=$(invoke access-sync dynamodb-insert.json) || { tail -30 "$WORK/watch.log"; fail "access sync insert invoke failed"; }
echo "$OUT" | no_failures || fail "insert: $OUT"
[ "$(granted $REPO)" = 111111111111 ] || fail "insert: policy grants $(granted $REPO), not 111111111111"
log "access sync, dynamodb-insert.json: $REPO grants 111111111111"

local_aws put-row user1@username.com ws-0001 333333333333 active
OUT=$(invoke access-sync dynamodb-modify.json) || fail "modify invoke failed"
echo "$OUT" | no_failures || fail "modify: $OUT"
[ "$(granted $REPO)" = 333333333333 ] || fail "modify: policy grants $(granted $REPO), not only 333333333333"
log "access sync, dynamodb-modify.json: 111111111111 revoked, 333333333333 granted"

local_aws delete-row user1@username.com ws-0001
OUT=$(invoke access-sync dynamodb-remove.json) || fail "remove invoke failed"
echo "$OUT" | no_failures || fail "remove: $OUT"
[ "$(granted $REPO)" = none ] || fail "remove: policy still grants $(granted $REPO)"
log "access sync, dynamodb-remove.json: revoked, empty policy deleted"

# The mixed batch: two rows of user1, a status change, an invalid escaped name
# (User@x.org), a record without keys, a numeric user_id, a removed user.
local_aws put-row user1@username.com ws-0001 111111111111 "above limit"
local_aws put-row user1@username.com ws-0002 222222222222 active
local_aws put-row first_last@uchicago.edu ws-0100 444444444444 active
local_aws put-row User@x.org ws-0200 555555555555 active
OUT=$(invoke access-sync dynamodb-batch-mixed.json) || fail "mixed batch invoke failed"
echo "$OUT" | no_failures || fail "mixed batch: bad records must not be retried: $OUT"
[ "$(granted $REPO)" = 111111111111,222222222222 ] || fail "mixed batch: user1 has $(granted $REPO)"
[ "$(granted nextflow-approved/first-5flast-40uchicago-2eedu)" = 444444444444 ] || fail "mixed batch: first_last not granted"
log "access sync, dynamodb-batch-mixed.json: union of user1's accounts, first_last granted, invalid and malformed records not retried"

OUT=$(invoke access-sync scheduled-reconcile.json) || fail "scheduled reconcile invoke failed"
# 3 users: user1 and first_last already right (no write), User@x.org a permanent failure (invalid name).
echo "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert (o["users"], o["unchanged"], o["failed"], o["failed_transient"], o["calls"]["set_policy"]) == (3, 2, 1, 0, 0), o' \
    || fail "scheduled reconcile: $OUT"
log "access sync, scheduled-reconcile.json: 3 users, 2 unchanged with 0 writes, 1 invalid name reported"

# The same full reconcile fanned out, as deployed: a run of steps on a queue
# (Lambda's SQS event source mapping played by drain-queue).
RECONCILE_QUEUE=$(local_aws create-queue ecr-bridge-reconcile)
local_aws create-backfill-table ecr-bridge-reconcile-runs
printf '%s\n' "RECONCILE_QUEUE_URL=$RECONCILE_QUEUE" RECONCILE_TABLE=ecr-bridge-reconcile-runs >>"$WORK/function.env"
restart_watch_for_access_sync "$WORK/function.env"
echo '{"reconcile": {}}' >"$WORK/reconcile-start.json"
OUT=$(invoke access-sync reconcile-start.json) || { tail -30 "$WORK/watch.log"; fail "fanned-out reconcile start failed"; }
echo "$OUT" | python3 -c 'import json,sys; r=json.load(sys.stdin)["reconcile_run"]; assert (r["joined"], r["segments"]) == (False, 4), r' \
    || fail "reconcile start: $OUT"
STEPS=$(local_aws drain-queue "$RECONCILE_QUEUE" "http://127.0.0.1:$INVOKE_PORT/2015-03-31/functions/access-sync/invocations") \
    || fail "reconcile steps: $STEPS"
RUN=$(local_aws reconcile-run ecr-bridge-reconcile-runs)
echo "$RUN" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert (r["state"], r["users"], r["failed"], r["writes"], r["segments_open"]) == ("finished", "3", "1", "0", "0"), r' \
    || fail "fanned-out reconcile: $RUN"
log "access sync, {\"reconcile\": {}} fanned out: 4 segments and the sweep in $STEPS; run finished, 3 users, 1 invalid name, 0 writes"

if grep -q "$(echo -n "$DST_CREDS" | base64)" "$WORK/watch.log" || grep -q "local-secret" "$WORK/watch.log"; then
    fail "credentials found in the functions' log"
fi
log "every sample event of both functions, a second image and a malformed event: outcomes as expected; no credentials in the log"
echo "lambda-invoke: 17 passed, 0 failed"
