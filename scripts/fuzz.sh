#!/usr/bin/env bash
# Fuzzes the parsers that take outside input (see docs/fuzzing.md), one
# target after another, each for FUZZ_SECONDS (default 600), at nice 10.
#
#   scripts/fuzz.sh                  every target
#   scripts/fuzz.sh mapping_config   some targets
#   FUZZ_SECONDS=60 scripts/fuzz.sh  a quick pass
#   FUZZ_CMIN=0 scripts/fuzz.sh      keep the corpus unminimised
#
# The corpus of each target lives in fuzz/corpus/<target>/ (committed,
# minimised with `cargo fuzz cmin` after each run) and is seeded from
# tests/corpus and events/. Crashes land in fuzz/artifacts/<target>/.
# Prints per target: seconds, executions, crashes, corpus size; exits 1 if
# any target crashed. Not run by CI or `make test` (`make fuzz` runs it).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). There is no nightly
# toolchain here: RUSTC_BOOTSTRAP=1 lets the stable compiler take the flags
# cargo-fuzz passes, and --sanitizer none leaves out ASan (which needs -Z
# flags and a sanitizer runtime); Rust's own checks (bounds, and overflow via
# fuzz/Cargo.toml's profile) stay on, so any panic is a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-600}"
CMIN="${FUZZ_CMIN:-1}"
ALL_TARGETS=(replicator_event access_sync_event mapping_config repository_policy user_id_escape function_config retry_policy)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing; install it with: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
# Release build with overflow checks (fuzz/Cargo.toml); target dir fuzz/target.
FUZZ_FLAGS=(--sanitizer none -O --fuzz-dir fuzz)

# Seeds: the bad-input corpus and the sample events, per target.
seed() {
    local target="$1" dir="fuzz/corpus/$1"
    mkdir -p "$dir"
    local sources=()
    case "$target" in
        replicator_event) sources=(tests/corpus/image-replicator/* events/image-*.json) ;;
        access_sync_event) sources=(tests/corpus/access-sync/* events/dynamodb-*.json events/scheduled-reconcile.json) ;;
        mapping_config) sources=(tests/corpus/mapping/*) ;;
        repository_policy) sources=(tests/corpus/policy/*) ;;
        user_id_escape) ;;
        function_config) ;;
    esac
    local f
    for f in "${sources[@]}"; do
        [ -f "$f" ] || continue
        if [ "$target" = repository_policy ]; then
            # First byte: how many accounts to grant.
            { printf '\001'; cat "$f"; } >"$dir/seed-$(basename "$f")"
        else
            cp "$f" "$dir/seed-$(basename "$f")"
        fi
    done
    case "$target" in
        user_id_escape)
            printf 'user1@username.com' >"$dir/seed-gen3"
            printf 'first_last@uchicago.edu' >"$dir/seed-underscore"
            printf 'jos\xc3\xa9@x.io' >"$dir/seed-accent"
            printf 'a-4e2d-4e2d-4e2d_x' >"$dir/seed-ambiguous"
            printf 'User@x.org' >"$dir/seed-capital"
            ;;
        function_config)
            printf 'MAPPING_PARAMETER=/ecr-bridge/mapping\nTABLE_NAME=gen3-pay-models\nREGISTRY_ENDPOINTS=a.dkr.ecr.us-east-1.amazonaws.com=http://127.0.0.1:5000\nSOURCE_ROLE_ARN=arn:aws:iam::123456789012:role/x\nSOURCE_ROLE_EXTERNAL_ID=e\nBLOB_CONCURRENCY=6\n' >"$dir/seed-replicator"
            printf 'TABLE_NAME=gen3-pay-models\nECR_ROLE_ARN=arn:aws:iam::222222222222:role/p\nECR_ROLE_EXTERNAL_ID=x\nPULL_ACTIONS=ecr:BatchGetImage\nALLOWED_REQUEST_STATUSES=active,above limit\nRECONCILE_CONCURRENCY=4\nMISSING_REPOSITORY=create\nSTATEMENT_SID=AllowCrossAccountPull\n' >"$dir/seed-access-sync"
            ;;
    esac
}

echo "fuzz: building ${TARGETS[*]} (cargo fuzz build ${FUZZ_FLAGS[*]})"
nice -n 10 cargo fuzz build "${FUZZ_FLAGS[@]}"

summary=()
crashed=0
for target in "${TARGETS[@]}"; do
    seed "$target"
    mkdir -p "fuzz/artifacts/$target"
    log="fuzz/target/fuzz-$target.log"
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    echo "fuzz: $target for ${SECONDS_PER_TARGET}s (log: $log)"
    start=$(date +%s)
    set +e
    # -timeout: an input taking over 10 s is a hang, reported as a crash.
    # -rss_limit_mb: a runaway allocation is a crash too.
    nice -n 10 cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -dict=fuzz/json.dict -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1
    status=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    if [ "$crashes" -gt 0 ]; then
        crashed=1
        echo "fuzz: $target CRASHED (exit $status); artifacts in fuzz/artifacts/$target/:"
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
    fi
    if [ "$CMIN" = 1 ] && [ "$crashes" -eq 0 ]; then
        # On edges only (no hit counts, no comparison operands): one input per
        # new edge keeps the committed corpus to a few hundred small files.
        nice -n 10 cargo fuzz cmin "${FUZZ_FLAGS[@]}" "$target" "fuzz/corpus/$target" -- \
            -use_counters=0 -use_cmp=0 -use_value_profile=0 \
            -rss_limit_mb=2048 -max_len=65536 >>"$log" 2>&1 || echo "fuzz: cmin of $target failed (see $log)"
    fi
    files=$(find "fuzz/corpus/$target" -type f | wc -l)
    line=$(printf '%-18s seconds %5d  executions %10s  crashes %d  corpus %d files' \
        "$target" "$elapsed" "${execs:-?}" "$crashes" "$files")
    echo "fuzz: $line"
    summary+=("$line")
done

echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
exit "$crashed"
