#!/usr/bin/env bash
# The main job, on a fresh machine: build libftq and run the best demo there
# is so far. For now that is ftq-info (version, build, every device libftq can
# use, the option registry) and the GEMM benchmark on each device; the
# fine-tuning quickstart replaces it once the trainer lands.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja >/dev/null
cmake --build "$build"
"$build/bin/ftq-info" --options
echo
echo "GEMM throughput (JSON lines):"
"$build/bin/bench_gemm" cpu --quick
if "$build/bin/ftq-info" --json | grep -q '"cuda_devices": [1-9]'; then
  "$build/bin/bench_gemm" cuda:0 --quick
fi
