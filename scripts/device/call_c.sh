# Device call C (nvidia-h200): fast-engine GPU tests, then SmolLM2-135M GRPO and distillation against TRL,
# then the Qwen2.5-0.5B-shape GRPO step. Each part has a hard time limit so the call ends inside 600 s.
# Carry: .whl. Run: bash scripts/device/call_c.sh
set -o pipefail
source scripts/device/setup.sh
cat "$OUT/env.txt" | head -3
timeout 80 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_fast_rollout.py -m gpu 2>&1 | tee "$OUT/gpu-tests.log" | tail -4
timeout 190 python3 -m bench.grpo_vs_trl --shape smollm2-135m --steps 5 --warmup 2 --profile \
  --runs cascadec-fast,trl --out "$OUT/grpo_135m.json" > "$OUT/grpo_135m.log" 2>&1
grep -E "^\||FAILED" "$OUT/grpo_135m.log" | tail -6
timeout 160 python3 -m bench.distill_vs_trl --shape smollm2-135m --steps 4 --warmup 1 \
  --runs cascadec-fast-mopd,cascadec-fast-reverse_kl,trl --out "$OUT/distill_135m.json" > "$OUT/distill_135m.log" 2>&1
grep -E "^\||FAILED" "$OUT/distill_135m.log" | tail -7
timeout 130 python3 -m bench.grpo_vs_trl --shape qwen2.5-0.5b --steps 3 --warmup 1 \
  --runs cascadec-fast,trl --out "$OUT/grpo_05b.json" > "$OUT/grpo_05b.log" 2>&1
grep -E "^\[|^\||FAILED" "$OUT/grpo_05b.log" | tail -10
