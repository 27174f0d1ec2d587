#!/usr/bin/env bash
# The one script to run when a session is lent a GPU (the device tool; ~15 minutes of device time in all):
#     bash demos/gpu_check.sh            # writes everything under $OUT (default /tmp/gpu-check)
# 1. the card, 2. eager vs CUDA-graph vs torch.compile Heun with the roofline ratio (demos.bench --gpu-report),
# 3. the CUDA tests (graph == eager to 1e-12, CPU == CUDA), 4. edm-sampling and ddp-launch on CUDA.
# Each step has its own timeout and the script goes on after a failure; the summary says which failed.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
status=()
step() {  # step NAME TIMEOUT COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    tail -n 30 "$OUT/$name.txt"
    status+=("$name: exit $rc, $((SECONDS - t0)) s")
}
step card 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
step gpu-report 300 $PY -m demos.bench --gpu-report --json "$OUT/gpu-report.json"
step cuda-tests 180 $PY -m pytest -q -p no:cacheprovider tests/test_gpu_sampler.py tests/test_edm_sampling.py -k "cuda or graph"
step edm-sampling 120 $PY -m demos.edm_sampling --out "$OUT/edm-sampling" --json
step ddp-launch 120 $PY -m demos.ddp_launch --param nproc=1 --out "$OUT/ddp-launch" --json
echo "=== summary"
printf '%s\n' "${status[@]}" | tee "$OUT/summary.txt"
