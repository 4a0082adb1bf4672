# Issue 16 on the device host's CPUs: this checkout's GRPO and distillation steps against TRL and against the
# base commit's code, side by side in one call. Every job is pinned to its own 2 cores (taskset,
# OMP_NUM_THREADS=2) with CUDA hidden:
#   cores 0-1    GRPO step, this checkout then TRL          (bench/grpo_vs_trl.py --device cpu, the issue's shape)
#   cores 2-3    distillation step, this checkout then TRL  (bench/distill_vs_trl.py --device cpu)
#   cores 6-7    GRPO step, the base commit's code          (build/main-tree: its runtime/, bench/, cascadec/)
#   cores 8-9    distillation step, the base commit's code
#   cores 10-11  bench/cpu_step_ab.py: the GRPO update with the base's and this checkout's log-prob op,
#                alternating in one process, bitwise-equal check first
#   cores 12-13  bench/cpu_gemm.py: fp32 against bf16 matrix products of the same shapes
#   cores 4-5    the GPU tests
# Carry .whl (lark, pydantic, TRL, datasets; docs/gpu.md) and build/main-tree, made with
#   mkdir -p build/main-tree && git archive BASE runtime bench cascadec | tar -x -C build/main-tree
# Run: bash scripts/device/call_cpu_ab.sh [seconds]
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
budget=${1:-420}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
{ date -u; lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz"; grep -o -w -E "amx_bf16|avx512_bf16" /proc/cpuinfo \
  | sort | uniq -c; python3 -c "import torch; print('torch', torch.__version__, torch.backends.cpu.get_cpu_capability())"
} > "$OUT/cpu.txt" 2>&1
cat "$OUT/cpu.txt"
job() {  # job <cores> <name> <tree> <command...>: pinned, CUDA hidden, killed at the deadline
  local cores=$1 name=$2 tree=$3; shift 3
  (cd "$tree" && CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=2 PYTHONPATH=/tmp/site:$PWD timeout -s TERM "$budget" \
    taskset -c "$cores" "$@" > "$OUT/$name.log" 2>&1)
  echo "== $name exit $?"
}
grpo=(--device cpu --shape smollm2-135m --prompts 4 --group 4 --new 32 --micro-batch 16 --steps 4 --warmup 1)
distill=(--device cpu --shape smollm2-135m --prompts 4 --new 32 --micro-batch 16 --steps 4 --warmup 1)
job 0,1 grpo-new . python3 -m bench.grpo_vs_trl "${grpo[@]}" --runs cascadec-hf,trl --out "$OUT/grpo-new.json" &
job 2,3 distill-new . python3 -m bench.distill_vs_trl "${distill[@]}" --runs cascadec-hf-reverse_kl,trl \
  --out "$OUT/distill-new.json" &
job 6,7 grpo-base build/main-tree python3 -m bench.grpo_vs_trl "${grpo[@]}" --runs cascadec-hf \
  --out "$OUT/grpo-base.json" &
job 8,9 distill-base build/main-tree python3 -m bench.distill_vs_trl "${distill[@]}" --runs cascadec-hf-reverse_kl \
  --out "$OUT/distill-base.json" &
job 10,11 ab-grpo . python3 -m bench.cpu_step_ab --step grpo --rounds 4 --base build/main-tree --changes logprobs \
  --out "$OUT/ab-grpo.json" &
job 12,13 gemm . python3 -m bench.cpu_gemm --rounds 5 --out "$OUT/cpu-gemm.json" &
PYTHONPATH=/tmp/site:$PWD timeout 150 taskset -c 4,5 python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu \
  > "$OUT/gpu-tests.log" 2>&1
echo "== gpu tests: $(tail -1 "$OUT/gpu-tests.log")"
wait
grep -h -E "^\|" "$OUT"/grpo-*.log "$OUT"/distill-*.log
grep -h -E "median|bitwise" "$OUT/ab-grpo.log" | head -5
cat "$OUT/gemm.log"
