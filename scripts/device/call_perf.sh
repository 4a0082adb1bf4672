# Issue 19, one device call (one H200 or H100, <= 560 s): the GPU tests, then every row of
# bench/results/gpu-vs-trl.md side by side with TRL (GRPO 135M 16x8x256, MOPD and reverse-KL distillation
# 135M, GRPO Qwen2.5-0.5B shape), each with an update-phase profile. Each part has its own time limit; a bench
# writes its JSON after every run, so a part cut short keeps the runs before it.
# Carry: .whl. Run: bash scripts/device/call_perf.sh
# Back under $OUT: env.txt, grpo_135m.json, distill_135m.json, grpo_05b.json, logs.tar (every log and
# profile table, rewritten after each part).
set -o pipefail
source scripts/device/setup.sh
LOGS=/tmp/perf-logs
mkdir -p "$LOGS"
pack() { tar -cf "$OUT/logs.tar" -C "$LOGS" . ; }
head -3 "$OUT/env.txt"

timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu > "$LOGS/gpu-tests.log" 2>&1
tail -4 "$LOGS/gpu-tests.log"; pack

bench() {  # bench <limit s> <name> <module> <args...>
  local limit=$1 name=$2 module=$3; shift 3
  timeout "$limit" python3 -m "$module" --profile --out "$LOGS/$name.json" "$@" > "$LOGS/$name.log" 2>&1
  echo "== $name (exit $?)"; grep -E "^\||FAILED" "$LOGS/$name.log" | tail -6
  [ -f "$LOGS/$name.json" ] && cp "$LOGS/$name.json" "$OUT/"
  pack
}
bench 160 grpo_135m bench.grpo_vs_trl --shape smollm2-135m --steps 5 --warmup 1 --runs cascadec-fast,trl
bench 160 distill_135m bench.distill_vs_trl --shape smollm2-135m --steps 4 --warmup 1 \
  --runs cascadec-fast-reverse_kl,cascadec-fast-mopd,trl
bench 125 grpo_05b bench.grpo_vs_trl --shape qwen2.5-0.5b --steps 4 --warmup 1 --runs cascadec-fast,trl
