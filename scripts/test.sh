#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, doc tests, and the interop
# tests against the Python reference (its venv is created here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-venv.sh >/dev/null
cargo test --workspace --all-targets
cargo test --workspace --doc
