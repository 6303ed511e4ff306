#!/usr/bin/env bash
# The one prepared GPU check (issue 7), for a lent CUDA machine whose python3 already has torch:
#   1. install vidbench and the wheels carried in .whl/ (packages that image lacks) into /tmp/site;
#   2. benchmarks/gpu_seed_latency.py: r2plus1d r18 at 16x112x112 (the seed's setting), eager / amp / compile;
#   3. suites/compare_all_gpu.yaml: train the compare_all models on CUDA and measure eager, amp, compile,
#      tensorrt, tensorrt-int8 (unsupported rows say why), within a time limit (rows survive the kill).
# Files land in $OUT (default /tmp/gpu-check). Usage: OUT=... bash benchmarks/gpu_check.sh [suite seconds]
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
SUITE_S=${1:-330}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 -c "import torch_tensorrt" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
timeout 150 python3 benchmarks/gpu_seed_latency.py 2>&1 | grep -v Warning | tee "$OUT/seed_latency.txt"
timeout "$SUITE_S" python3 -m vidbench.cli run suites/compare_all_gpu.yaml --quiet > "$OUT/suite.log" 2>&1
echo "suite exit status $?" | tee -a "$OUT/suite.log"
run=$(ls -d results/compare_all_gpu/*/ | tail -1)
python3 -m vidbench.cli report "$run" >> "$OUT/suite.log" 2>&1
cp "$run"/results.csv "$run"/env.json "$run"/summary.md "$OUT"/ 2>/dev/null
tail -40 "$OUT/suite.log"
