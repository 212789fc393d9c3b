# Sourced by bench/gpu_*.sh: strict variables, unbuffered Python, DATA (input folder) and OUT
# (log folder, created), and the GPU's name, memory and driver in $OUT/gpu.txt.
set -u
export PYTHONUNBUFFERED=1
DATA="${DATA:-../shared/data}"
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
