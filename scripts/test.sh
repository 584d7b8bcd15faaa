#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, every unit,
# property, fuzz-regression and end-to-end test, and a build of the fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== the fuzz target still builds"
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet

echo "== cargo test"
cargo test --workspace --locked
