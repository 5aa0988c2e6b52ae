#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration and doc tests, the interop tests
# against the Python reference (its venv is created here when missing), and the
# facade crate once per transport feature.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-venv.sh >/dev/null
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc --no-fail-fast
# Each transport alone; all of them together (`full`) is what the workspace run above
# already built and tested (yoton-cli turns on yoton/full).
for features in tcp ws quic; do
    echo "== yoton with only the '$features' feature"
    cargo test -p yoton --no-default-features --features "$features"
done
