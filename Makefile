# The two commands a newcomer needs:
#   make demo   - install what is missing, run the replicator locally against stand-ins
#   make test   - install what is missing, run every test against real registries,
#                 moto and the Lambda runtime emulator (cargo lambda watch/invoke)
# and:
#   make bench  - issue 7's table: ecr-bridge vs skopeo vs the registry's floor, cold
#                 start, zip sizes, access sync calls (BENCH_ARGS=--quick for a fast check)
#   make install - the ecr-bridge CLI into ~/.cargo/bin (cargo install)
#   make scale  - backfill of 20,000 image records over 200 repositories (50 real), and the
#                 full reconcile of 10,000 users (SCALE_USERS) in 4 segments, paged
#                 listings, short deadlines (the reconcile ~35 min; the backfill lists
#                 2,000 slowed pages with 16 workers; CI runs both at 400/240)
SHELL := /bin/bash
NEXTEST_PROFILE ?= default

.PHONY: setup demo test install check-templates sam-local-invoke bench scale lint fmt fuzz

setup:
	@scripts/setup.sh

demo:
	@scripts/setup.sh --demo
	cargo build -q -p ecr-bridge-tests --bin rig
	scripts/demo.sh

test: setup
	@docker info >/dev/null 2>&1 || { echo "make test: no Docker engine answers (docker info); its sam local invoke step needs one: start it (e.g. systemctl start docker) and run again" >&2; exit 1; }
	cargo build --workspace --all-targets
	cargo nextest run --workspace --profile $(NEXTEST_PROFILE)
	scripts/check-templates.sh
	scripts/sam-local-invoke.sh
	scripts/lambda-invoke.sh

# The CLI (copy, plan, backfill, escape) as `ecr-bridge` on PATH.
install:
	cargo install --locked --path crates/ecr-bridge-cli

check-templates: setup
	scripts/check-templates.sh

sam-local-invoke: setup
	scripts/sam-local-invoke.sh

BENCH_ARGS ?=
bench: setup
	scripts/bench.sh $(BENCH_ARGS)

SCALE_IMAGES ?= 20000
SCALE_REPOSITORIES ?= 200
SCALE_REAL ?= 50
SCALE_USERS ?= 10000
scale: setup
	BACKFILL_SCALE_IMAGES=$(SCALE_IMAGES) BACKFILL_SCALE_REPOSITORIES=$(SCALE_REPOSITORIES) \
	BACKFILL_SCALE_REAL=$(SCALE_REAL) BACKFILL_SCALE_WORKERS=16 \
	RECONCILE_SCALE_USERS=$(SCALE_USERS) RECONCILE_SCALE_SCAN_PAGE=100 RECONCILE_SCALE_REPOSITORY_PAGE=100 \
	RECONCILE_SCALE_INVOCATION=20 \
	cargo nextest run -p ecr-bridge-tests --test backfill_scale --test access_sync_fanout --profile scale --no-capture

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Not part of make test or CI: every fuzz target for FUZZ_SECONDS (default 600)
# each, one after another (docs/fuzzing.md).
fuzz:
	scripts/fuzz.sh
