# Study chain, call 1 of 2-3 (nvidia-h200-x2): park the first half of the SmolLM2 GGUF (one call carries at
# most 64 MiB), then the GPU tests (the bf16 log-prob head of runtime/logprobs.py is new).
# Code runs from $SNAP (default .), e.g. a clean `git archive` of the commit under test in build/snap.
# Carry: .whl build/qwhl build/gguf-a [build/snap]. Run: SNAP=build/snap bash scripts/device/study_1.sh
set -o pipefail
source scripts/device/setup.sh
mkdir -p /tmp/gguf && cp build/gguf-a/part /tmp/gguf/a
cat "$OUT/env.txt"
cd "${SNAP:-.}" && export PYTHONPATH=/tmp/site:$PWD
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/gpu --ignore=tests/gpu/test_fsdp2.py 2>&1 \
  | tee "$OUT/gpu-tests.log" | tail -15
