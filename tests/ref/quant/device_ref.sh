#!/usr/bin/env bash
# On the GPU machine: measures rcp.approx.ftz.f32 (rcp_probe.cu), makes the
# reference vectors with bitsandbytes' CUDA kernels (make_ref.py, which also
# cross-checks them against the emulation), and checks which instructions
# bitsandbytes' quantize kernels use. Results go to $OUT.
#   BNB_PATH=<folder holding the bitsandbytes package> tests/ref/quant/device_ref.sh
set -uo pipefail
OUT=${OUT:-/tmp/ftq-ref}
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/cuda/bin:$PATH
export PYTHONPATH=${BNB_PATH:-}:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
nvcc -O2 -arch=sm_90 "$here/rcp_probe.cu" -o /tmp/rcp_probe && /tmp/rcp_probe "$OUT/rcp_approx_diff.bin"
mkdir -p /tmp/ckpt
PYTHONUNBUFFERED=1 python3 "$here/make_ref.py" --out /tmp/ckpt --rcp-table "$OUT/rcp_approx_diff.bin" 2>&1 | grep -v kernels-community
mv /tmp/ckpt/quant_ref.bin "$OUT/" && (cd /tmp/ckpt && tar cf "$OUT/ckpt.tar" bnb_linear_*.safetensors)
lib=$(ls "${BNB_PATH:-.}"/bitsandbytes/libbitsandbytes_cuda1*.so | head -1)
echo "bnb library: $lib"
cuobjdump -sass "$lib" 2>/dev/null | awk '/Function : /{p = ($0 ~ /kQuantizeBlockwise|kDequantizeBlockwise/)} p' > /tmp/sass.txt
echo "quantize/dequantize SASS lines: $(wc -l < /tmp/sass.txt); MUFU.RCP: $(grep -c 'MUFU.RCP' /tmp/sass.txt);" \
  "FMUL.FTZ: $(grep -c 'FMUL.FTZ' /tmp/sass.txt); FMNMX.FTZ: $(grep -c 'FMNMX.FTZ' /tmp/sass.txt)"
grep -E "Function : |MUFU" /tmp/sass.txt | head -40
gzip -c /tmp/sass.txt > "$OUT/bnb_sass.txt.gz"
ls -la "$OUT"
