#!/usr/bin/env bash
# Checks libftq.so's exported symbols against the public headers: every
# exported symbol is an ftq_ function with the LIBFTQ_ version, and every
# function declared FTQ_API in include/libftq is exported (so nothing is
# declared that is not implemented).
# usage: check-exports.sh path/to/libftq.so path/to/include/libftq
set -euo pipefail
lib=$1
inc=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^LIBFTQ_' | sort -u)
bad=$(printf '%s\n' "$exported" | sed 's/@.*//' | grep -v '^ftq_' || true)
if [ -n "$bad" ]; then
  echo "exported symbols without the ftq_ prefix:"; echo "$bad"; exit 1
fi
unversioned=$(printf '%s\n' "$exported" | grep -v '@@LIBFTQ_' || true)
if [ -n "$unversioned" ]; then
  echo "exported symbols without a LIBFTQ_ version:"; echo "$unversioned"; exit 1
fi
names=$(printf '%s\n' "$exported" | sed 's/@.*//' | sort -u)
# declarations: "FTQ_API <type> ftq_name(" possibly over several tokens
declared=$(cat "$inc"/*.h | tr '\n' ' ' | grep -oE 'FTQ_API[^;(]*\bftq_[a-z0-9_]+\s*\(' \
  | grep -oE 'ftq_[a-z0-9_]+\s*\($' | sed 's/\s*($//' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$names"))
extra=$(comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$names"))
status=0
if [ -n "$missing" ]; then echo "declared in headers but not exported:"; echo "$missing"; status=1; fi
if [ -n "$extra" ]; then echo "exported but not declared FTQ_API in a header:"; echo "$extra"; status=1; fi
[ $status -eq 0 ] && echo "exports OK: $(printf '%s\n' "$names" | wc -l) functions, all declared and versioned"
exit $status
