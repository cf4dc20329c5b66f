#!/bin/bash
# The CUDA paths the CPU test suite cannot reach, as one script for a GPU machine (README: "What ran where").
# Each step is `python -m pipeline` on the tiny model (experiment=smoke, no W&B), in its own folder under $RUNS;
# its output in $RUNS/<step>.log and all of it in $LOG; one "--- <step> rc=<exit status> <seconds>" line per step
# to stdout; the script exits 1 naming the steps that did not end as expected (C: exit 2, the others: 0).
#   A  the default method on the GPU (generation bf16, training fp32)    B  bf16 training
#   C  runner=multi with more processes than GPUs: refused (exit 2) before any model loads (needs < 2 GPUs)
#   D  torchrun: generation and DDP training over NCCL, one process per GPU
#   E  QLoRA: 4-bit NF4 base (bitsandbytes) + LoRA, bf16      F  FSDP2 through the shipped accelerate config
#   G  one iteration of the default job (the embedded model at the default shapes; MODEL_ARGS to change it)
# Usage: bash benchmarks/gpu_check.sh        (STEPS="A D" for some; RUNS, LOG, PYTHON, MODEL_ARGS, NPROC)
# Results on an H200, 2026-12-04: README, "What ran where".
set -u
PY=${PYTHON:-python}
RUNS=${RUNS:-/tmp/gpu_check}
LOG=${LOG:-$RUNS/gpu_check.log}
STEPS=${STEPS:-A B C D E F G}
NPROC=${NPROC:-$($PY -c "import torch; print(max(1, torch.cuda.device_count()))")}
mkdir -p "$RUNS"
FAILED=""
{ date -u; nvidia-smi -L 2>&1; $PY -c "import sys, torch, transformers, trl; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'trl', trl.__version__)"; } \
    2>&1 | tee -a "$LOG"

step() {  # step NAME ARGS...: python -m pipeline ARGS in $RUNS/NAME
    local name=$1 start=$SECONDS rc
    shift
    [[ " $STEPS " == *" ${name%%_*} "* ]] || return 0
    echo "=== $name: $*" | tee -a "$LOG"
    $PY -m pipeline logger=none hydra.run.dir="$RUNS/$name" "$@" 2>&1 | tr '\r' '\n' > "$RUNS/$name.log"
    rc=${PIPESTATUS[0]}
    cat "$RUNS/$name.log" >> "$LOG"
    echo "--- $name rc=$rc $((SECONDS - start))s" | tee -a "$LOG"
    [ "$rc" = "${WANT:-0}" ] || FAILED="$FAILED $name"
    grep -E "^\[iter|^error|[Ww]arning" "$RUNS/$name.log" | sort -u | tail -n 4 | sed 's/^/    /'
}

TINY=(model=tiny experiment=smoke)
step A_default "${TINY[@]}" iterations=2
step B_bf16 "${TINY[@]}" iterations=1 train.dtype=bfloat16
WANT=2 step C_refused "${TINY[@]}" runner=multi runner.generate.nproc=$((NPROC + 1)) runner.train.nproc=$((NPROC + 1))
step D_ddp_nccl "${TINY[@]}" iterations=1 runner=multi runner.generate.nproc="$NPROC" runner.train.nproc="$NPROC"
step E_qlora "${TINY[@]}" iterations=1 train.quantize=4bit train.dtype=bfloat16 \
    "train.lora={r: 8, lora_alpha: 16, target_modules: all-linear}"
step F_fsdp "${TINY[@]}" iterations=1 runner.train.kind=accelerate runner.train.nproc="$NPROC" \
    runner.train.accelerate_config="$($PY -m pipeline.runner --accelerate-config fsdp)"
# shellcheck disable=SC2086  # MODEL_ARGS is a list of overrides
step G_default_job ${MODEL_ARGS:-} iterations=1
echo "runs: $RUNS  log: $LOG"
[ -z "$FAILED" ] || { echo "failed (exit status not the expected one):$FAILED"; exit 1; }
