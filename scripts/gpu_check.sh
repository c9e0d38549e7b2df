#!/usr/bin/env bash
# The GPU acceptance run (scripts/gpu_check.py; docs/performance.md, "The GPU acceptance run"):
#   scripts/gpu_check.sh OUTDIR [--wheels DIR] [--budget-s 480] [--device cuda:0] ...
# PYTHON: the interpreter that has torch (default python3).
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: $0 OUTDIR [--wheels DIR] [--budget-s SECONDS] [options of gpu_check.py run]" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" "$(dirname "$0")/gpu_check.py" run "$@"
