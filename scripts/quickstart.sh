#!/usr/bin/env bash
# The main job on a fresh machine: builds libftq, fetches
# SmolLM2-135M-Instruct (scripts/get-model.sh), fine-tunes it with QLoRA
# (NF4 base, LoRA) on the shipped catalog task (examples/data), and shows
# answers and held-out exact-match before and after.
#
# On a GPU (when libftq's CUDA module finds one and runs the model) it trains
# one epoch with the seed notebook's settings; on the CPU a shorter run with
# a larger learning rate and rank, so the change shows within minutes.
# Extra arguments go to ftq-finetune (e.g. --max_steps 100, --device cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja >/dev/null
cmake --build "$build"
model=$(scripts/get-model.sh)
out=${OUT_DIR:-results/quickstart}

# OpenBLAS does not recognise some CPU models and then runs generic kernels
# several times slower; name the right kernel set when the CPU has it.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi

device=cpu
if "$build/bin/ftq-info" --json | grep -q '"cuda_devices": [1-9]'; then device=cuda:0; fi
common=(--model "$model" --data examples/data/catalog_train_messages.jsonl
        --eval_prompts examples/data/catalog_eval_prompts.jsonl --output_dir "$out" --device "$device")
if [ "$device" = cpu ]; then
  # a short CPU run: rank 16 on every linear layer, lr 5e-4, assistant-only loss, 120 steps
  set -x
  "$build/bin/ftq-finetune" "${common[@]}" --eval_limit 20 --r 16 --lora_alpha 32 --target_modules all-linear \
    --learning_rate 5e-4 --assistant_only_loss --max_steps 120 --logging_steps 20 "$@"
else
  set -x
  "$build/bin/ftq-finetune" "${common[@]}" --eval_limit 100 --logging_steps 25 "$@"
fi
