#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the test tools (idempotent), then checks
# formatting, lints, docs, and runs every test (unit, backend suites against real S3 and Consul,
# end-to-end tests that start the real `trough` binary).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
export TROUGH_TOOLS_DIR="${TROUGH_TOOLS_DIR:-$HOME/.cache/trough-tools}"
export PATH="$TROUGH_TOOLS_DIR/bin:$PATH"

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo machete (no unused dependencies)"
cargo machete

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee target/test-output.txt
# One summary line for the whole run, counted from cargo's per-binary results.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "trough: %d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.txt

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "all checks passed"
