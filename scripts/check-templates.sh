#!/usr/bin/env bash
# Checks the CloudFormation templates, offline and without AWS credentials.
# The three: template.yaml (source account / hub), deploy/target-account.yaml
# (each target account), deploy/source-account.yaml (each spoke source account).
#   - sam validate (SAM translation) and sam validate --lint, all three
#   - cfn-lint, all three
#   - scripts/check-iam.py --self-test (the IAM check must be able to fail)
#   - scripts/check-iam.py, all three (no "*" but ecr:GetAuthorizationToken,
#     scoped sts:AssumeRole, ExternalId on cross-account trust, a source
#     condition on service trust other than Lambda's, no managed policies, an
#     *_EXTERNAL_ID variable on every function whose role may assume a role,
#     and event bus policies: PutEvents only, Principal "*" only for an
#     organisation)
#   - scripts/check-dashboards.py --self-test, then template.yaml's dashboards:
#     JSON once substituted, and every EMF metric they show is emitted
#   - scripts/check-target-account.py: the target template's required
#     PushRepositoryPrefix and the push role's Deny on the user repositories,
#     as a deploy would see them; and cfn-lint with deploy parameters (a deploy
#     without PushRepositoryPrefix is refused, one with it is clean)
#   - scripts/check-source-account.py: hub and spoke as a deploy would see them
#     (the spoke's required parameters, read role trust and permissions, forward
#     role and rule; the hub's assumable roles for every empty/set combination,
#     bus policies and rule); cfn-lint of the spoke with deploy parameters (one
#     without HubEventBusArn is refused), and of template.yaml deployed as a hub
#     with SpokeAccountIds / SpokeOrganizationId / SourceRoleArns
# Ends with "check-templates: N passed, M failed"; exits 1 if any failed.
# Installs nothing: it needs the SAM venv that scripts/setup.sh creates.
set -uo pipefail
cd "$(dirname "$0")/.."

TOOLS="${ECR_BRIDGE_TOOLS:-$HOME/.cache/ecr-bridge}"
VENV="$TOOLS/sam-venv"
SAM="$VENV/bin/sam"
CFN_LINT="$VENV/bin/cfn-lint"
PYTHON="$VENV/bin/python"
TEMPLATES=(template.yaml deploy/target-account.yaml deploy/source-account.yaml)

for tool in "$SAM" "$CFN_LINT" "$PYTHON"; do
    if [ ! -x "$tool" ]; then
        {
            echo "check-templates: $tool is missing. Install it with:"
            echo "    python3 -m venv \"$VENV\" && \"$VENV/bin/pip\" install aws-sam-cli cfn-lint"
            echo "(or run scripts/setup.sh)"
        } >&2
        exit 2
    fi
done

# The checks must never depend on (or use) anyone's AWS credentials.
offline() {
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        SAM_CLI_TELEMETRY=0 "$@"
}

passed=0
failed=0
check() {
    local name="$1"
    shift
    local out
    if out=$(offline "$@" 2>&1); then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$name"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

for t in "${TEMPLATES[@]}"; do
    check "sam validate $t" "$SAM" validate --region us-east-1 -t "$t"
    check "sam validate --lint $t" "$SAM" validate --lint --region us-east-1 -t "$t"
    check "cfn-lint $t" "$CFN_LINT" "$t"
done
check "check-iam --self-test" "$PYTHON" scripts/check-iam.py --self-test
for t in "${TEMPLATES[@]}"; do
    check "check-iam $t" "$PYTHON" scripts/check-iam.py "$t"
done

check "check-dashboards --self-test" "$PYTHON" scripts/check-dashboards.py --self-test
check "check-dashboards template.yaml" "$PYTHON" scripts/check-dashboards.py template.yaml
check "check-target-account" "$PYTHON" scripts/check-target-account.py
target_params=(
    ReplicatorRoleArn=arn:aws:iam::111111111111:role/ecr-bridge-replicator PushExternalId=kuali-sync
    AccessSyncRoleArn=arn:aws:iam::111111111111:role/ecr-bridge-access-sync PolicyExternalId=gen3-access
)
check "cfn-lint deploy/target-account.yaml, deployed with PushRepositoryPrefix" \
    "$CFN_LINT" deploy/target-account.yaml --parameters "${target_params[@]}" PushRepositoryPrefix=coeus
# Must fail, and for that reason: PushRepositoryPrefix has no default.
check "cfn-lint refuses deploy/target-account.yaml deployed without PushRepositoryPrefix" \
    bash -c 'out=$("$0" "$@" 2>&1); rc=$?; printf "%s\n" "$out"
             [ "$rc" -ne 0 ] && grep -q "E2900 .PushRepositoryPrefix. is a required property" <<<"$out"' \
    "$CFN_LINT" deploy/target-account.yaml --parameters "${target_params[@]}"

check "check-source-account" "$PYTHON" scripts/check-source-account.py
spoke_params=(
    HubEventBusArn=arn:aws:events:us-east-1:111111111111:event-bus/ecr-bridge-hub
    ReplicatorRoleArn=arn:aws:iam::111111111111:role/ecr-bridge-replicator
)
check "cfn-lint deploy/source-account.yaml, deployed as a spoke" \
    "$CFN_LINT" deploy/source-account.yaml --parameters "${spoke_params[@]}" ReadExternalId=read-333333333333 \
    SourceRepositoryPrefixes=team-a,team-b ForwardDeletes=true
# Must fail, and for that reason: HubEventBusArn has no default.
check "cfn-lint refuses deploy/source-account.yaml deployed without HubEventBusArn" \
    bash -c 'out=$("$0" "$@" 2>&1); rc=$?; printf "%s\n" "$out"
             [ "$rc" -ne 0 ] && grep -q "E2900 .HubEventBusArn. is a required property" <<<"$out"' \
    "$CFN_LINT" deploy/source-account.yaml --parameters "${spoke_params[@]:1}" ReadExternalId=read-333333333333
# cfn-lint ignores --parameters on a SAM template: the script expands it first.
check "cfn-lint template.yaml deployed as a hub (SpokeAccountIds, SpokeOrganizationId)" \
    "$PYTHON" scripts/check-source-account.py --hub-lint "$CFN_LINT"

echo "check-templates: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
