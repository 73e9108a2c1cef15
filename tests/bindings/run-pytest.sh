#!/usr/bin/env bash
# Runs the Python binding's pytest suite and its seed-flow example (tiny
# model) against a given libftq.so.
# usage: run-pytest.sh <python> <libftq.so>   (env FTQ_PYTHON overrides the interpreter)
set -euo pipefail
python=${FTQ_PYTHON:-$1}
command -v "$python" >/dev/null 2>&1 || python=python3  # not found at configure time: try PATH now
export FTQ_LIBRARY=$(realpath "$2")
cd "$(dirname "$0")/../.."
skip() {
  if [ "${FTQ_REQUIRE_BINDINGS:-0}" = 1 ]; then echo "FAILED: $*"; exit 1; fi
  echo "SKIPPED: $*"; exit 77
}
command -v "$python" >/dev/null || skip "no Python interpreter (set FTQ_PYTHON)"
"$python" -c "import numpy, pytest" 2>/dev/null || skip "$python lacks numpy or pytest (pip install numpy pytest)"
export PYTHONDONTWRITEBYTECODE=1
"$python" -m pytest -q -p no:cacheprovider examples/python/tests
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$python" examples/python/seed_flow.py --tiny --steps 2 --eval 1 --out "$out" >"$out/log.txt" ||
  { cat "$out/log.txt"; exit 1; }
grep -q "trained 2 steps" "$out/log.txt" && grep -q "after training: exact match" "$out/log.txt" ||
  { cat "$out/log.txt"; exit 1; }
echo "seed_flow.py --tiny: OK"
