#!/usr/bin/env bash
# Runs Berth's whole test suite: installs what the tests need, builds everything, then
# runs unit and integration tests (which start their own registries and berthd daemons).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Lints are reported but do not gate the tests: a clean checkout must always be testable.
cargo fmt --all -- --check || echo "test.sh: formatting differs (run cargo fmt --all)"
cargo build --workspace --bins
cargo clippy --workspace --all-targets -q -- -D warnings || echo "test.sh: clippy reported warnings"
exec cargo test --workspace --no-fail-fast -- --test-threads="${BERTH_TEST_THREADS:-4}"
