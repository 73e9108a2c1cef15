#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address + undefined sanitizers,
# leak detection) and runs each for a fixed time on a copy of the committed
# seed corpus. Fails on any crash, leak, timeout or sanitizer report; the
# input that caused it is left in <build>/fuzz/findings/<target>/.
# A finding, once fixed, goes into tests/fuzz/regressions/<target>/ so the
# test suite replays it forever (test_fuzz_<target>).
#
# usage: tests/fuzz/run-fuzzers.sh [seconds per target (30)] [build dir (build-fuzz)]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
build=${2:-build-fuzz}
CC=${CC:-clang}
command -v "$CC" >/dev/null || { echo "run-fuzzers: $CC not found (clang is needed for libFuzzer)"; exit 1; }

CC=$CC cmake -S . -B "$build" -G Ninja -DFTQ_FUZZ=ON -DFTQ_CUDA=OFF -DFTQ_BLAS=OFF -DFTQ_BUILD_BENCH=OFF \
  -DFTQ_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" --target fuzz_safetensors fuzz_gguf fuzz_config

status=0
for t in safetensors gguf config; do
  work="$build/fuzz/work/$t"
  findings="$build/fuzz/findings/$t"
  rm -rf "$work" "$findings"
  mkdir -p "$work" "$findings"
  cp tests/fuzz/corpus/$t/* "$work/"
  if [ -d tests/fuzz/regressions/$t ]; then cp tests/fuzz/regressions/$t/* "$work/" 2>/dev/null || true; fi
  echo "=== fuzz_$t for ${secs}s"
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "$build/fuzz/fuzz_$t" "$work" -max_total_time="$secs" -max_len=131072 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/" 2>"$build/fuzz/$t.log"; then
    status=1
    echo "fuzz_$t FAILED: see $build/fuzz/$t.log; inputs in $findings/"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$build/fuzz/$t.log" | head -20 || true
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/fuzz/$t.log" | tail -2 || true
  fi
done
exit $status
