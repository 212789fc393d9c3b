#!/usr/bin/env bash
# Partitioned vs full NBFNet on FB15k-237 on one GPU (issue 5, item 4: the comparison that CPU
# budgets cannot bring near convergence), for a machine that has only torch (no pyspark, no
# network): the k-leaf assignments come from bench/results/nbfnet_partitioned_assignments (made
# here with the Spark partitioner).
# Usage (repo root): DATA=.gpu_data OUT=/tmp/out bash bench/gpu_nbfnet_partitioned.sh [minutes] [k]
# (for the device tool: mkdir -p .gpu_data && cp -r ../shared/data/fb15k-237 .gpu_data/, 24 MB,
# then run with carry [".gpu_data"] and timeout_s 600; under 10 minutes at the default 3)
# Trains the full model and the k-leaf model (outward halo, 1 hop) for [minutes] each (default
# 3), plus a k-leaf model stopped after as many training queries as the full model had (equal
# work: --partitioned-queries budget,full; rows with query_cap 0 are the equal-time ones), ranks
# 2,000 test triples (4,000 filtered queries) with each, and reports the speedup, the relative
# MRR loss and the restriction's ceiling (restriction_* keys). The full model is kept in
# $OUT/full.pt: `--ceiling-only --full-checkpoint $OUT/full.pt` re-reads it.
source "$(dirname "$0")/gpu_env.sh"
MIN="${1:-3}"
K="${2:-16}"
limit=$(python3 -c "print(int(float('$MIN') * 150 + 120))")
timeout "$limit" python3 -m bench.nbfnet_partitioned --triples "$DATA/fb15k-237" --k "$K" \
  --halo-hops 1 --halo-edges outward --budget-minutes "$MIN" --test-queries "${TEST_QUERIES:-2000}" \
  --device "${DEVICE:-cuda}" --assignment-cache bench/results/nbfnet_partitioned_assignments \
  --full-checkpoint "$OUT/full.pt" --partitioned-queries "${CAPS:-budget,full}" \
  --log-every 200 --json > "$OUT/nbfnet_partitioned.log" 2>&1
echo "exit $?"
grep -E "^\[bench\]|^\| |^\{" "$OUT/nbfnet_partitioned.log" | tail -20
