#!/usr/bin/env bash
# The GPU pass of the benchmarks, as one script for a machine with a GPU (each script
# writes its own section of benchmarks/RESULTS.md under the device's name, next to the
# CPU numbers). Run from the repository root after `pip install -e ".[bench]"` and a
# CUDA build of jax (`pip install "jax[cuda12]"`):
#
#   bash benchmarks/gpu_pass.sh            # ~10 min on an H100-class GPU (estimate)
#   bash benchmarks/gpu_pass.sh --quick    # smoke check of every script, writes nothing
#
# What it measures: the distinct-position draw (loop vs loop-free) and the LeNet-5
# pixel-change sweep against the bare forward pass (target >= 0.9x), the sweep against
# its anchors, ResNet-18 / ResNet-50 forward (float32 and bfloat16, TFLOP/s), FGSM
# (16-eps sweep), the fooling search and the few-pixel attack (evaluations / s), the
# RBM fit and grid search.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import jax, sys; d = jax.devices()[0]; print(d.platform, d.device_kind); \
sys.exit(0 if d.platform == 'gpu' else 'gpu_pass.sh: no GPU visible to jax')"
quick=()
if [[ "${1:-}" == "--quick" ]]; then quick=(--quick); fi
python benchmarks/bench_draw.py "${quick[@]}"
python benchmarks/bench_sweep.py "${quick[@]}"
python benchmarks/bench_zoo.py "${quick[@]}"
python benchmarks/bench_fgsm.py "${quick[@]}"
python benchmarks/bench_fooling.py "${quick[@]}"
python benchmarks/bench_few_pixel.py "${quick[@]}"
python benchmarks/bench_rbm.py "${quick[@]}"
