#!/usr/bin/env bash
# Issue #15's GPU checks in one go, on a bare machine with one NVIDIA GPU, no internet and a
# python3 that has PyTorch with CUDA (the workplace's device machines; its time on a GPU is
# not measured yet). First, on a machine with the internet, `bash bench/gpu_prepare.sh`
# gathers .gpu/; then, from the repository root (holding .gpu/) on the GPU machine:
#
#   bash bench/gpu_check.sh [OUT]        # OUT: where results go (default $OUT, else bench/out/gpu)
#
# Stages, most important first, each with its own time limit (they add up to under 9
# minutes, so one `run` of the device tool holds them) so that one failure or slow stage
# leaves the others' results:
#   1. the machine (nvidia-smi, torch, CUDA) and the carried wheels installed in /tmp/ts-site
#   2. smoke: one epoch of the st-transformer and SASRec on 120 NYC users on the GPU
#   3. in the background, the CPU twin: st-transformer, NYC leave-last, 3 epochs, 8 threads
#   4. full NYC training of the st-transformer to early stop on the GPU (goal < 2 min), its
#      top-10 latency on the GPU, and RecBole SASRec on the same card for the epoch ratio
#      (goal <= 0.5x); each epoch and result is in the log even if the stage is cut
#   5. the GPU twin of 3
#   6. explanations on the GPU (bench.explain_bench --device cuda) of the model of stage 4
#   7. `model_bench --compare-devices` of 3 and 5: metrics equal within noise
# Written to OUT: gpu_check.log (everything printed), cpu3.json, gpu3.json, gpu_full.json.
#
# Rehearsal without a GPU: DEVICE=cpu QUICK=1 PYTHON=/path/to/python bash bench/gpu_check.sh
# runs every stage on the CPU with one epoch on small slices.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-bench/out/gpu}}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
tee_pid=$!
# on every exit: the log complete before the machine hands OUT back
trap 'exec >&- 2>&-; wait "$tee_pid" 2>/dev/null' EXIT
t_start=$SECONDS

stage() { echo; echo "=== $* ($(date -u +%FT%TZ), $((SECONDS - t_start)) s in, load $(cut -d' ' -f1-3 /proc/loadavg))"; }
limit() {  # limit SECONDS CMD...: run it, say how it ended, never stop the script
  local s=$1 rc; shift
  timeout --kill-after=10 "$s" "$@"; rc=$?
  [ $rc -eq 0 ] || echo "!! exit $rc$([ $rc -eq 124 ] && echo " (over its ${s} s)"): $*"
  return 0
}

stage "1. machine and packages"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), device $DEVICE, python $PY"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc; free -g | head -2
site=/tmp/ts-site
rm -rf "$site"; mkdir -p "$site"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu/whl/*.whl \
  || { echo "!! the wheels in .gpu/whl did not install (run bench/gpu_prepare.sh)"; exit 1; }
ln -sfn "$PWD" "$site/trailscope"   # the namespace package: trailscope.app is ./app, and so on
export PYTHONPATH="$site:$PWD" TRAILSCOPE_DATA="$PWD/.gpu/data" PYTHONUNBUFFERED=1
"$PY" - "$DEVICE" <<'EOF' || exit 1
import sys, torch, duckdb, captum, recbole, numpy, pandas
from trailscope.models.training.evaluate import amp_dtype
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), duckdb {duckdb.__version__}, "
      f"captum {captum.__version__}, recbole {recbole.__version__}, numpy {numpy.__version__}, "
      f"pandas {pandas.__version__}")
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        sys.exit("!! torch sees no CUDA GPU")
    dev = torch.device("cuda")
    print(f"GPU {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB, "
          f"training autocast dtype {amp_dtype(dev)}")
EOF

bench=("$PY" -m bench.model_bench --datasets nyc --splits leave-last --device "$DEVICE" "${quick[@]}")

stage "2. smoke: one epoch on 120 users"
limit 90 "${bench[@]}" --quick --models st-transformer,sasrec --latency-calls 5 --home /tmp/ts-smoke \
  --out /tmp/ts-smoke.json

stage "3. the CPU twin starts in the background (its output in this log at stage 7)"
timeout 380 "$PY" -m bench.model_bench --datasets nyc --splits leave-last --device cpu "${quick[@]}" \
  --threads 8 --epochs 3 --models st-transformer --latency-calls 50 --home /tmp/ts-cpu3 \
  --out "$OUT/cpu3.json" > /tmp/ts-cpu3.txt 2>&1 &
cpu_pid=$!

stage "4. full NYC training to early stop on $DEVICE, and RecBole SASRec on the same card"
limit 240 "${bench[@]}" --threads 4 --epochs 60 --models st-transformer --latency-calls 200 \
  --peers --peer-python "$PY" --peer-models SASRec --peer-epochs 5 --home /tmp/ts-full \
  --out "$OUT/gpu_full.json"

stage "5. the GPU twin: the CPU twin's run on $DEVICE"
limit 100 "${bench[@]}" --threads 4 --epochs 3 --models st-transformer --latency-calls 50 \
  --home /tmp/ts-gpu3 --out "$OUT/gpu3.json"

stage "6. explanations on $DEVICE, of the model stage 4 trained (else one of 20 epochs)"
explain=(--epochs 20 --users 60 --time-users 30)
[ ${#quick[@]} -gt 0 ] && explain=(--epochs 1 --users 8 --time-users 4)
limit 80 "$PY" -m bench.explain_bench --device "$DEVICE" --threads 4 "${explain[@]}" \
  --home /tmp/ts-full

stage "7. the CPU twin (waiting for it) and the comparison"
wait "$cpu_pid" || echo "!! the CPU twin exited $?"
cat /tmp/ts-cpu3.txt
if [ -f "$OUT/cpu3.json" ] && [ -f "$OUT/gpu3.json" ]; then
  "$PY" -m bench.model_bench --compare-devices "$OUT/cpu3.json" "$OUT/gpu3.json"
fi
stage "done"
