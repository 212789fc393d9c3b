#!/usr/bin/env bash
# Spark GPU discovery script (spark.{driver,executor,worker}.resource.gpu.discoveryScript):
# prints the ResourceInformation JSON Spark expects, e.g. {"name": "gpu", "addresses": ["0","1"]},
# from `nvidia-smi`. On a machine without nvidia-smi or without GPUs it prints an empty address
# list (Spark then fails fast if GPUs were requested, instead of hanging), and exits 0.
# CUDA_VISIBLE_DEVICES, when it is a list of indexes, restricts the list to those indexes
# (UUIDs or an unset variable leave nvidia-smi's list as it is).
set -uo pipefail
addresses=""
if command -v nvidia-smi >/dev/null 2>&1; then
  addresses="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' \
    | grep -E '^[0-9]+$' || true)"
fi
if [[ "${CUDA_VISIBLE_DEVICES:-}" =~ ^[0-9]+(,[0-9]+)*$ ]] && [ -n "$addresses" ]; then
  visible="$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | tr -d ' ')"
  addresses="$(grep -Fx -f <(printf '%s\n' "$visible") <<< "$addresses" || true)"
fi
json="$(printf '%s\n' $addresses | sed '/^$/d; s/.*/"&"/' | paste -sd, -)"
printf '{"name": "gpu", "addresses": [%s]}\n' "$json"
