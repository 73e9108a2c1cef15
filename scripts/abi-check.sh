#!/usr/bin/env bash
# ABI guard: compares a built libftq.so with the committed baseline
# (abi/libftq.abi, made by abidw from libabigail) and fails on any
# difference. An incompatible change (removed or changed function, changed
# type layout) needs a major version bump; a compatible one (new functions)
# needs the baseline updated on purpose in the same commit:
#   scripts/abi-check.sh build/libftq.so --update
# usage: abi-check.sh <libftq.so> [--update]
set -euo pipefail
lib=$1
root=$(cd "$(dirname "$0")/.." && pwd)
baseline=$root/abi/libftq.abi
headers=$root/include/libftq
dump() { abidw --no-corpus-path --drop-private-types --headers-dir "$headers" --out-file "$1" "$lib"; }
if [ "${2:-}" = "--update" ]; then
  dump "$baseline"
  echo "ABI baseline updated: $baseline"
  exit 0
fi
[ -f "$baseline" ] || { echo "no ABI baseline at $baseline (create it with --update)"; exit 1; }
set +e
report=$(abidiff --no-unreferenced-symbols --headers-dir2 "$headers" "$baseline" "$lib")
rc=$?
set -e
echo "$report"
if (( rc & 8 )); then
  echo "ABI check FAILED: incompatible change against $baseline."
  echo "Incompatible changes need a new major version (FTQ_VERSION_MAJOR) and then an updated baseline."
  exit 1
elif (( rc & 4 )); then
  echo "ABI check FAILED: compatible ABI change not recorded in the baseline."
  echo "If it is intended, update the baseline in the same commit: scripts/abi-check.sh $lib --update"
  exit 1
elif (( rc != 0 )); then
  echo "ABI check FAILED: abidiff error (exit $rc)"
  exit 1
fi
echo "ABI check OK: no change against $baseline"
