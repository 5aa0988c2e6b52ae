#!/usr/bin/env bash
# Creates (once) and caches a Python venv with the Yoton reference (pyzo==4.22.0)
# under target/pyvenv, and prints the path of its python interpreter.
# Fails loudly when Python or the package cannot be had.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${YOTON_PYVENV:-$root/target/pyvenv}"
marker="$venv/.pyzo-4.22.0"
if [ ! -f "$marker" ]; then
    py=$(command -v python3 || command -v python || true)
    if [ -z "$py" ]; then
        echo "python-venv.sh: no python3 on PATH; install Python 3 (e.g. apt-get install python3 python3-venv)" >&2
        exit 1
    fi
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pyzo==4.22.0 >&2
    # The package must import; yoton lives inside pyzo.
    "$venv/bin/python" - >&2 <<'PY'
import os, sys, importlib.util
spec = importlib.util.find_spec("pyzo")
assert spec is not None, "pyzo not installed"
sys.path.insert(0, os.path.dirname(spec.origin))
import yoton  # noqa
PY
    touch "$marker"
fi
echo "$venv/bin/python"
