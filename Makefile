# The two commands a newcomer needs:
#   make test   - install what is missing, run every test against real registries
#   make bench  - ecr-bridge vs skopeo vs the registry's floor (prints a table)
SHELL := /bin/bash
NEXTEST_PROFILE ?= default

.PHONY: setup test bench lint fmt

setup:
	@scripts/setup.sh

test: setup
	cargo build --workspace --all-targets
	cargo nextest run --workspace --profile $(NEXTEST_PROFILE)

bench: setup
	scripts/bench.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
