#!/usr/bin/env bash
# The checks a session with a GPU runs, in one go (a few minutes on one GPU): the tests marked `gpu` (CUDA against
# the CPU), the solver benchmark on CUDA (with the 2D Kuramoto-Sivashinsky job) and what the TSM protocol
# costs per step at 64^2, eager and with the solver step compiled (the eager step is bound by kernel launches).
#
#   bash benchmarks/gpu.sh [OUT]      # logs into OUT (default: $OUT, else runs/gpu)
#
# Where pdeforge is not installed, the checkout is imported as the package through a link under /tmp. Each part has
# its own time limit, so one that fails or hangs leaves the others' logs; together they stay under 10 minutes (one
# device command).
set -uo pipefail
out=${1:-${OUT:-runs/gpu}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ! python3 -c "import pdeforge" 2>/dev/null; then
    mkdir -p /tmp/pdeforge_path && ln -sfn "$PWD" /tmp/pdeforge_path/pdeforge
    export PYTHONPATH=/tmp/pdeforge_path${PYTHONPATH:+:$PYTHONPATH}
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$out/gpu.txt"
# every test marked gpu, wherever it is (a list of files missed the ones added to other files)
timeout 180 python3 -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib" -m gpu -rs tests \
    2>&1 | tee "$out/tests.log"
timeout 120 python3 benchmarks/solvers.py --device cuda 2>&1 | tee "$out/solvers.log"
timeout 90 python3 benchmarks/tsm_cost.py --device cuda --resolution 64 --dns 256,512,1024 --repeats 5 2>&1 | tee "$out/tsm_cost.log"
timeout 180 python3 benchmarks/tsm_cost.py --device cuda --resolution 64 --skip dns,latency --compile --repeats 5 2>&1 | tee "$out/tsm_compile.log"
