#!/usr/bin/env bash
# One call on the GPU machine: build, run the tests (GPU ones included),
# compute-sanitizer on the GPU tests, and the benchmarks with their peers.
# Output: a short table last; full logs and JSON under $OUT.
#
# usage (on the device, from the repo root): scripts/device-run.sh [steps...]
#   steps: build test sanitize bench bench-quant bench-step  (default: all)
#   dist-comm (not in the default): the NCCL communicator test across the
#   machine's GPUs (needs 2 or more, e.g. kind nvidia-h100-x2) and the topology
# Needs .deps/*.deb (jansson, zlib headers: the device has no package
# registry) carried with the call; see scripts/fetch-device-deps.sh.
# Python packages the device lacks travel as folders put on PYTHONPATH:
# .bnb (bitsandbytes) and .pyextra (e.g. peft, copied from a venv).
# FTQ_CTEST_ARGS: extra ctest arguments (e.g. "-L gpu").
# FTQ_BENCH_STEP_ARGS: bench_step's shape arguments (default: the seed
# configuration, Llama-2-7B shape, NF4 + double quant, r 64 on q_proj,v_proj,
# batch 4, seq 512, recompute); the peers get the same shape.
set -uo pipefail
OUT=${OUT:-/tmp/ftq-out}
mkdir -p "$OUT"
steps=${*:-build test sanitize bench bench-quant bench-step}
# e2e: the fine-tuning job on SmolLM2 (the GGUF travels split in .m1 .m2 .m3,
#      which may come in successive calls to a warm machine: the 64 MiB limit)
# bench-load: bench_load on a 7B-shaped folder next to transformers' from_pretrained
# bench-dp: bench_step data parallel on 1, 2 and 4 GPUs (as many as there are) for
#      the seed configuration, in one run, with the scaling over 1 GPU
# dist: the data-parallel tests on every GPU (ctest -R 'dp_cuda|comm_nccl')
# FTQ_BENCH_DP_OURS=0 / FTQ_BENCH_DP_PEER=0 leave libftq's / the peer's
# bench-dp runs out (to split them over calls); FTQ_BENCH_DP_TIMEOUT per run.
# FTQ_SANITIZE_TESTS: a regular expression choosing the sanitized tests.
has() { [[ " $steps " == *" $1 "* ]]; }
deps=/tmp/ftq-deps
mkdir -p $deps
for f in .deps/*.deb; do dpkg -x "$f" $deps; done
# absolute symlinks in the packages (libz.so -> /lib/...) must point inside $deps
find $deps -type l -lname '/*' | while read -r l; do ln -sfn "$deps$(readlink "$l")" "$l"; done
libarch=$deps/usr/lib/x86_64-linux-gnu
# NVLink SHARP / multicast stays off on these shared machines (libftq forces
# it too; this covers every other NCCL user of the run)
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=$libarch:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH
summary=()
note() { summary+=("$*"); echo ">>> $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
note "card: $gpu; commit ${FTQ_COMMIT:-?} (the copy has no .git: pass FTQ_COMMIT=...)"

if has build; then
  t0=$SECONDS
  cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTQ_WERROR=ON -DFTQ_BLAS=OFF \
    -DCMAKE_PREFIX_PATH=$deps/usr -DJANSSON_INCLUDE_DIR=$deps/usr/include -DJANSSON_LIBRARY=$libarch/libjansson.so \
    -DZLIB_INCLUDE_DIR=$deps/usr/include -DZLIB_LIBRARY=$libarch/libz.so > "$OUT/build.log" 2>&1 \
    && cmake --build build-dev -j 16 >> "$OUT/build.log" 2>&1
  rc=$?
  note "build: rc=$rc ($((SECONDS - t0)) s)"
  [ $rc -eq 0 ] || { tail -n 60 "$OUT/build.log"; exit 1; }
fi

export FTQ_CUDA_MODULE=$PWD/build-dev/libftq-cuda.so
export FTQ_REQUIRE_GPU=1  # a GPU test that cannot reach the GPU fails here
if has test; then
  build-dev/bin/ftq-info | head -12
  ctest --test-dir build-dev --output-on-failure -j 8 ${FTQ_CTEST_ARGS:-} > "$OUT/ctest.log" 2>&1
  rc=$?
  note "ctest (all labels): rc=$rc; $(grep -E 'tests passed|tests failed' "$OUT/ctest.log")"
  grep -E "Skipped|Failed|\*\*\*" "$OUT/ctest.log" | head -20
  [ $rc -eq 0 ] || grep -B5 -A30 "FAILED\|Failed" "$OUT/ctest.log" | tail -60
fi

if has dist-comm; then
  # one process per GPU (up to 4): collectives, a join timeout, a killed peer
  nvidia-smi topo -m 2>&1 | tee "$OUT/topo.txt"
  ngpu=$(nvidia-smi -L | wc -l)
  t0=$SECONDS
  NCCL_NVLS_ENABLE=0 NCCL_DEBUG=${NCCL_DEBUG:-WARN} timeout 330 build-dev/tests/test_comm_nccl \
    > "$OUT/dist_comm.log" 2>&1
  rc=$?
  note "dist-comm test_comm_nccl on $ngpu GPUs: rc=$rc ($((SECONDS - t0)) s)$([ $rc -eq 77 ] && echo ' SKIPPED')"
  grep -E "^\[rank|SKIP|FAILED|CHECK|passed|NCCL WARN" "$OUT/dist_comm.log" | head -80
fi

if has sanitize; then
  for t in build-dev/tests/test_backend_cuda $(ls build-dev/tests/test_*_cuda 2>/dev/null | grep -v backend_cuda); do
    [[ "$t" =~ ${FTQ_SANITIZE_TESTS:-.} ]] || continue  # a regular expression picks some
    for tool in memcheck racecheck; do
      log=/tmp/sanitize-$tool-$(basename "$t").log
      FTQ_TEST_QUICK=1 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 "$t" > "$log" 2>&1
      rc=$?
      note "compute-sanitizer $tool $(basename "$t"): rc=$rc $(grep -E 'ERROR SUMMARY' "$log" | tail -1)"
      { echo "##### $tool $t (rc=$rc)"; cat "$log"; } >> "$OUT/sanitize.log"
      grep -E "^========= (Invalid|Program hit|Race|Error)" "$log" | sort | uniq -c | head -10
    done
  done
fi

if has bench; then
  build-dev/bin/bench_gemm cuda:0 > "$OUT/bench_gemm.jsonl" 2>> "$OUT/bench.err"
  note "bench_gemm rc=$?"
  python3 bench/peer/gemm_torch.py > "$OUT/peer_gemm_torch.jsonl" 2>> "$OUT/bench.err"
  note "peer gemm (torch) rc=$?"
  python3 - "$OUT/bench_gemm.jsonl" "$OUT/peer_gemm_torch.jsonl" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = {(r["dtype"], r["m"], r["n"], r["k"]): r for r in (json.loads(l) for l in open(sys.argv[2]) if l.startswith("{"))}
print(f"{'dtype':5} {'m':>5} {'n':>6} {'k':>6} {'libftq TF/s':>12} {'torch TF/s':>11}")
for r in ours:
    p = peer.get((r["dtype"], r["m"], r["n"], r["k"]))
    print(f"{r['dtype']:5} {r['m']:5} {r['n']:6} {r['k']:6} {r['tflops']:12.1f} {p['tflops'] if p else float('nan'):11.1f}")
PY
fi

if has bench-quant; then
  # bitsandbytes is not installed on the device: carry its package as .bnb/bitsandbytes
  [ -d .bnb ] && export PYTHONPATH=$PWD/.bnb:${PYTHONPATH:-}
  build-dev/bin/bench_quant cuda:0 > "$OUT/bench_quant.jsonl" 2>> "$OUT/bench.err"
  note "bench_quant rc=$?"
  python3 bench/peer/quant_bnb.py > "$OUT/peer_quant_bnb.jsonl" 2>> "$OUT/bench.err"
  note "peer quant (bitsandbytes) rc=$?"
  python3 - "$OUT/bench_quant.jsonl" "$OUT/peer_quant_bnb.jsonl" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
def find(rows, r):
    for p in rows:
        if p["bench"] == r["bench"] and p.get("rows") == r.get("rows") and p.get("cols") == r.get("cols") \
                and p.get("double_quant") == r.get("double_quant"):
            return p
for r in ours:
    p = find(peer, r) or {}
    if r["bench"] == "copy":
        print(f"copy 1 GiB: libftq {r['gbps']:.0f} GB/s, torch {p.get('gbps', float('nan')):.0f} GB/s")
    elif r["bench"] == "dequant":
        print(f"dequant nf4 {r['rows']:5}x{r['cols']:5} dq={int(r['double_quant'])} [{r.get('variant', '')}]: "
              f"libftq {r['median_ms']*1e3:7.1f} us "
              f"{r['gbps']:6.0f} GB/s {r['pct_of_copy']:5.1f}% | bnb {p.get('median_ms', float('nan'))*1e3:7.1f} us "
              f"{p.get('gbps', float('nan')):6.0f} GB/s {p.get('pct_of_copy', float('nan')):5.1f}%")
    else:
        print(f"quantize 7B bf16->nf4+dq ({r['tensors']} tensors): libftq {r['best_s']:.4f} s wall | "
              f"bnb {p.get('best_s', float('nan')):.4f} s GPU events, {p.get('best_wall_s', float('nan')):.4f} s wall")
PY
fi

if has bench-step; then
  for d in .bnb .pyextra; do [ -d $d ] && export PYTHONPATH=$PWD/$d:${PYTHONPATH:-}; done
  export PYTHONUNBUFFERED=1
  shape=${FTQ_BENCH_STEP_SHAPE:-7b}
  bs=${FTQ_BENCH_STEP_BATCH:-4}
  sq=${FTQ_BENCH_STEP_SEQ:-512}
  modes=${FTQ_BENCH_STEP_PEERS:-qlora lora-bf16}
  build-dev/bin/bench_step --shape $shape --batch $bs --seq $sq ${FTQ_BENCH_STEP_ARGS:-} \
    > "$OUT/bench_step.jsonl" 2>> "$OUT/bench.err"
  note "bench_step rc=$? $(tail -c 300 "$OUT/bench.err" | tail -2)"
  if [ "${FTQ_BENCH_STEP_PROFILE_LAYERS:-4}" != 0 ]; then
    # per-operation GPU time on a few layers of the shape, after one warm-up step (2 synchronisations)
    FTQ_CUDA_PROFILE=2 build-dev/bin/bench_step --shape $shape --batch $bs --seq $sq ${FTQ_BENCH_STEP_ARGS:-} \
      --layers ${FTQ_BENCH_STEP_PROFILE_LAYERS:-4} --steps 2 --warmup 1 > "$OUT/bench_step_profile.jsonl" \
      2> "$OUT/bench_step_profile.txt"
    note "bench_step profile rc=$?"
    grep "CUDA profile" "$OUT/bench_step_profile.txt" | sed 's/^/    /'
  fi
  for mode in $modes; do
    timeout 300 python3 bench/peer/train_step_hf.py --shape $shape --batch $bs --seq $sq --mode $mode \
      --steps ${FTQ_BENCH_STEP_PEER_STEPS:-10} >> "$OUT/peer_step.jsonl" 2>> "$OUT/bench_peer.err"
    note "peer train step ($mode) rc=$?"
  done
  python3 - "$OUT/bench_step.jsonl" "$OUT/peer_step.jsonl" <<'PY'
import json, sys
rows = []
for f in sys.argv[1:]:
    try:
        rows += [json.loads(l) for l in open(f) if l.startswith("{")]
    except OSError:
        pass
print(f"{'impl':34} {'mode':9} {'step ms':>8} {'tok/s':>8} {'peak GiB':>8}  phases / mfu")
for r in rows:
    extra = ""
    if "phase_ms" in r:
        p = r["phase_ms"]
        extra = f"fwd {p['forward']:.1f} bwd {p['backward']:.1f} opt {p['optimizer']:.1f} ms, mfu {r['mfu']:.3f}"
    print(f"{r['impl']:34} {r.get('mode', r.get('quant', '')):9} {r['step_ms']:8.1f} {r['tokens_per_s']:8.1f} "
          f"{r['peak_mem_gib']:8.2f}  {extra}")
PY
fi

if has e2e; then
  gguf=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf
  [ -f $gguf ] || cat .m1/part .m2/part .m3/part > $gguf
  want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if [ "$(sha256sum $gguf | cut -d' ' -f1)" != $want ]; then note "e2e: model parts missing or damaged"; else
    t0=$SECONDS
    build-dev/bin/ftq-finetune --model $gguf --data examples/data/catalog_train_messages.jsonl \
      --eval_prompts examples/data/catalog_eval_prompts.jsonl --eval_limit ${FTQ_E2E_EVAL:-200} --show 3 \
      --device cuda:0 --output_dir /tmp/e2e ${FTQ_E2E_ARGS:-} > "$OUT/e2e.log" 2>&1
    note "e2e rc=$? ($((SECONDS - t0)) s): $(grep -E '=> |trained' "$OUT/e2e.log" | tr '\n' ' ')"
    cp /tmp/e2e/metrics.jsonl "$OUT/e2e_metrics.jsonl" 2>/dev/null
    cp /tmp/e2e/loss.svg "$OUT/e2e_loss.svg" 2>/dev/null
    grep -E "=> |\[(before|after)\]|->|tok/s ETA 00:00:00|train_loss" "$OUT/e2e.log" | head -20
  fi
fi

if has dist; then
  export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on shared hosts
  nvidia-smi topo -m 2>&1 | head -12
  ctest --test-dir build-dev --output-on-failure -R 'dp_cuda|comm_nccl' > "$OUT/ctest_dist.log" 2>&1
  note "dist tests: rc=$? $(grep -E 'tests passed|tests failed' "$OUT/ctest_dist.log")"
  grep -E "ranks|lost rank|checks|SKIP|Failed" "$OUT/ctest_dist.log" | head -20
fi

if has bench-dp; then
  export NCCL_NVLS_ENABLE=0
  ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
  shape=${FTQ_BENCH_STEP_SHAPE:-7b}
  bs=${FTQ_BENCH_STEP_BATCH:-4}
  sq=${FTQ_BENCH_STEP_SEQ:-512}
  for n in 1 2 4; do
    [ $n -le $ngpu ] || continue
    [ "${FTQ_BENCH_DP_OURS:-1}" = 1 ] || continue
    timeout ${FTQ_BENCH_DP_TIMEOUT:-400} build-dev/bin/bench_step --shape $shape --batch $bs --seq $sq --nproc $n ${FTQ_BENCH_STEP_ARGS:-} \
      >> "$OUT/bench_dp.jsonl" 2>> "$OUT/bench_dp.err"
    note "bench_step --nproc $n rc=$?"
  done
  # the peer: transformers + peft + bitsandbytes under PyTorch DDP (torchrun)
  for d in .bnb .pyextra; do [ -d $d ] && export PYTHONPATH=$PWD/$d:${PYTHONPATH:-}; done
  for n in 1 2 4; do
    [ $n -le $ngpu ] || continue
    [ "${FTQ_BENCH_DP_PEER:-1}" = 1 ] || continue
    timeout ${FTQ_BENCH_DP_TIMEOUT:-500} python3 -m torch.distributed.run --standalone --nproc_per_node $n bench/peer/train_step_hf.py \
      --shape $shape --batch $bs --seq $sq --mode qlora --steps ${FTQ_BENCH_STEP_PEER_STEPS:-10} \
      >> "$OUT/peer_dp.jsonl" 2>> "$OUT/bench_dp_peer.err"
    note "peer DDP step ($n GPUs) rc=$?"
  done
  python3 - "$OUT/bench_dp.jsonl" "$OUT/peer_dp.jsonl" <<'PY'
import json, sys
for f in sys.argv[1:]:
    try:
        rows = [json.loads(l) for l in open(f) if l.startswith("{")]
    except OSError:
        continue
    one = next((r for r in rows if r.get("world") == 1), None)
    for r in rows:
        s = r["tokens_per_s"] / one["tokens_per_s"] if one else float("nan")
        print(f"{r['impl']:34} GPUs {r['world']}: step {r['step_ms']:.1f} ms, {r['tokens_per_s']:.0f} tok/s, "
              f"x{s:.2f} over 1 GPU, peak {r['peak_mem_gib']:.2f} GiB/GPU")
PY
fi

if has bench-load; then
  [ -d .bnb ] && export PYTHONPATH=$PWD/.bnb:${PYTHONPATH:-}
  dir=/tmp/ftq-bench-load-7b
  t0=$SECONDS
  build-dev/bin/bench_load --shape 7b --device cuda --dir $dir --option load_in_4bit=true \
    --option bnb_4bit_quant_type=nf4 --repeat 3 > "$OUT/bench_load.jsonl" 2>> "$OUT/bench.err"
  note "bench_load rc=$? ($((SECONDS - t0)) s)"
  timeout 400 python3 bench/peer/load_hf.py --dir $dir --device cuda --4bit --repeat 3 > "$OUT/peer_load.jsonl" 2>> "$OUT/bench.err"
  note "peer load rc=$?"
  cat "$OUT/bench_load.jsonl" "$OUT/peer_load.jsonl"
fi

echo
echo "===== summary ====="
printf '%s\n' "${summary[@]}"
