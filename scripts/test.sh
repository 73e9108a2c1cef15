#!/usr/bin/env bash
# Builds libftq and runs the test suite (GPU tests skip without a GPU).
# usage: scripts/test.sh [build dir] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
cmake -S . -B "$build" -G Ninja "$@"
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
