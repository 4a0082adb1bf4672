# Device call A (nvidia-h200): GPU tests, then the SmolLM2-135M GRPO and distillation benchmarks.
# Carry: .whl build/qwhl. Run: bash scripts/device/call_a.sh
set -o pipefail
source scripts/device/setup.sh
cat "$OUT/env.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/gpu-tests.log" | tail -25
timeout 240 python3 -m bench.grpo_vs_trl --shape smollm2-135m --steps 5 --warmup 2 --profile \
  --out "$OUT/grpo_135m.json" > "$OUT/grpo_135m.log" 2>&1
grep -E "^\[|^\||FAILED|Error" "$OUT/grpo_135m.log" | tail -30
timeout 170 python3 -m bench.distill_vs_trl --shape smollm2-135m --steps 4 --warmup 1 --profile \
  --runs cascadec-fast-reverse_kl,cascadec-fast-mopd,trl --out "$OUT/distill_135m.json" > "$OUT/distill_135m.log" 2>&1
grep -E "^\[|^\||FAILED|Error" "$OUT/distill_135m.log" | tail -30
