#!/usr/bin/env bash
# Set-up for benchmarks/endpoint.py; idempotent, and endpoint.py runs it itself when something is missing.
#
#   bash benchmarks/setup_endpoint_benchmark.sh
#
# 1. wrk, the HTTP load generator, from the Debian package (apt-get; sudo only when not root).
# 2. MLflow in its own virtual environment, benchmarks/.venv-mlflow, so that MLflow's many dependencies never
#    enter the project's environment: mlflow 3.x, xgboost matching the project's pin in setup.py, pandas.
#
# PYTHON picks the interpreter the venv is made from (default: python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-mlflow"
PYTHON="${PYTHON:-python3}"
# Keep in step with setup.py: the model is trained by the project's xgboost and loaded by this one.
XGBOOST_SPEC='xgboost>=3.2,<3.3'
MLFLOW_SPEC='mlflow>=3,<4'

if ! command -v wrk >/dev/null 2>&1; then
    echo "setup: installing wrk (apt-get)" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
wrk --version 2>&1 | head -n 1 >&2 || true

# A venv counts as ready only once the marker written after a successful install is there, so an
# interrupted install is redone rather than trusted.
MARKER="$VENV/.benchmark-ready"
if [ ! -f "$MARKER" ]; then
    echo "setup: creating $VENV with $MLFLOW_SPEC, $XGBOOST_SPEC, pandas (pip)" >&2
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "$MLFLOW_SPEC" "$XGBOOST_SPEC" pandas
    "$VENV/bin/python" -c "import mlflow, xgboost, pandas" # fails loudly when the install is broken
    touch "$MARKER"
fi
"$VENV/bin/python" -c "import mlflow, xgboost; print(f'setup: mlflow {mlflow.__version__}, xgboost {xgboost.__version__} in $VENV')" >&2
