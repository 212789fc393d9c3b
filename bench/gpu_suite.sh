#!/usr/bin/env bash
# The GPU checks, in one command for a machine that has only torch (no pyspark, no network).
# Usage (repo root): DATA=.cache/gpu-data OUT=/tmp/out bash bench/gpu_suite.sh [minutes]
# Runs the gnn tests on CUDA, then LightGCN with the paper's settings on Gowalla and NBFNet on
# FB15k-237 side by side on the one GPU, each with a training budget of [minutes] (default 6).
source "$(dirname "$0")/gpu_env.sh"
MIN="${1:-6}"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"
timeout 60 python3 -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_gnn_lightgcn.py tests/test_gnn_metrics.py tests/test_gnn_nbfnet.py > "$OUT/pytest-gpu.log" 2>&1
echo "pytest exit $?" | tee -a "$OUT/pytest-gpu.log"; tail -3 "$OUT/pytest-gpu.log"
# LightGCN smoke: CUDA-graph capture first, eager steps if that fails.
GRAPHS=""
timeout 45 python3 -m bench.lightgcn --train "$DATA/gowalla/train.txt" --test "$DATA/gowalla/test.txt" \
  --paper-settings --device cuda --epochs 1 > "$OUT/lightgcn-smoke.log" 2>&1 || GRAPHS="--no-cuda-graphs"
echo "lightgcn smoke: ${GRAPHS:-cuda graphs ok}"
budget_s=$(python3 -c "print(int(float('$MIN') * 60 + 120))")
timeout "$budget_s" python3 -m bench.lightgcn --train "$DATA/gowalla/train.txt" --test "$DATA/gowalla/test.txt" \
  --paper-settings --device cuda --budget-minutes "$MIN" --eval-every 25 --compare-pyg $GRAPHS --json \
  > "$OUT/lightgcn.log" 2>&1 &
lg=$!
timeout "$budget_s" python3 -m bench.nbfnet --dataset fb15k-237 --data-dir "$DATA" --device cuda \
  --budget-minutes "$MIN" --eval-minutes 1.5 --json > "$OUT/nbfnet.log" 2>&1 &
nb=$!
wait $lg; echo "lightgcn exit $?"
wait $nb; echo "nbfnet exit $?"
tail -4 "$OUT/lightgcn.log"; tail -4 "$OUT/nbfnet.log"
