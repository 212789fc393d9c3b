#!/usr/bin/env bash
# NBFNet's GPU checks in one command for a machine that has only torch (no pyspark, no network).
# Usage (repo root): DATA=.gpu_data OUT=/tmp/out bash bench/gpu_nbfnet.sh [fb15k_minutes] [device]
# Side by side on the one GPU: FB15k-237 with [fb15k_minutes] of training (the issue's 8-minute
# target), Cora to 20 epochs (the AUROC/AP target, which 2 CPU cores cannot reach in a session),
# and the gnn tests marked gpu. Logs go to $OUT; the last lines are each run's JSON.
source "$(dirname "$0")/gpu_env.sh"
MIN="${1:-7.5}"
DEV="${2:-cuda}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi dmon -s um -d 10 > "$OUT/dmon.txt" 2>&1 &
fi
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')" | tee -a "$OUT/gpu.txt"
fb_limit=$(python3 -c "print(int(float('$MIN') * 60 + 100))")
timeout "$fb_limit" python3 -m bench.nbfnet --dataset fb15k-237 --data-dir "$DATA" --device "$DEV" \
  --budget-minutes "$MIN" --eval-minutes 0.5 --json > "$OUT/nbfnet_fb15k.log" 2>&1 &
fb=$!
timeout 420 python3 -m bench.nbfnet --dataset cora --data-dir "$DATA" --device "$DEV" \
  --epochs "${CORA_EPOCHS:-20}" --budget-minutes "${CORA_MIN:-5}" --json > "$OUT/nbfnet_cora.log" 2>&1 &
cora=$!
if [ "$DEV" = cuda ]; then
  timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gnn_lightgcn.py \
    tests/test_gnn_metrics.py tests/test_gnn_nbfnet.py tests/test_gnn_unlearn.py \
    > "$OUT/pytest_gpu.log" 2>&1
  echo "pytest -m gpu exit $?"; tail -3 "$OUT/pytest_gpu.log"
fi
wait $cora; echo "cora exit $?"; grep -E "valid_auroc|^\{" "$OUT/nbfnet_cora.log" | tail -25
wait $fb; echo "fb15k exit $?"
grep -E "check|step|^\| |^\{" "$OUT/nbfnet_fb15k.log" | tail -40
