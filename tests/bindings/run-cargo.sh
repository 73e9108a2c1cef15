#!/usr/bin/env bash
# Builds and tests the Rust crates offline against a given libftq build
# folder, then runs the seed-flow example on a tiny model.
# usage: run-cargo.sh <cargo> <folder of libftq.so> <cargo target folder>   (env FTQ_CARGO overrides cargo)
set -euo pipefail
cargo=${FTQ_CARGO:-$1}
command -v "$cargo" >/dev/null 2>&1 || cargo=cargo  # not found at configure time: try PATH now
export FTQ_LIB_DIR=$(realpath "$2")
export CARGO_TARGET_DIR=$(realpath -m "$3")
cd "$(dirname "$0")/../../examples/rust"
if ! command -v "$cargo" >/dev/null 2>&1; then
  if [ "${FTQ_REQUIRE_BINDINGS:-0}" = 1 ]; then echo "FAILED: cargo not found"; exit 1; fi
  echo "SKIPPED: cargo not found"; exit 77
fi
"$cargo" test --offline --quiet --workspace
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$cargo" run --offline --quiet --example seed_flow -- --tiny --steps 2 --eval 1 --out "$out" >"$out/log.txt" ||
  { cat "$out/log.txt"; exit 1; }
grep -q "trained 2 steps" "$out/log.txt" && grep -q "after training: exact match" "$out/log.txt" ||
  { cat "$out/log.txt"; exit 1; }
echo "seed_flow example --tiny: OK"
