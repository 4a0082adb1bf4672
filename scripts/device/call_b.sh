# Device call B (nvidia-h200): GPU tests, then the SmolLM2-135M GRPO and distillation benchmarks against
# TRL; also parks the first half of the SmolLM2 GGUF in /tmp/gguf for call C (quickstart).
# Carry: .whl build/qwhl build/gguf-a. Run: bash scripts/device/call_b.sh
set -o pipefail
source scripts/device/setup.sh
mkdir -p /tmp/gguf && cp build/gguf-a/part /tmp/gguf/a
cat "$OUT/env.txt"
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/gpu-tests.log" | tail -8
timeout 230 python3 -m bench.grpo_vs_trl --shape smollm2-135m --steps 5 --warmup 2 --profile \
  --runs cascadec-fast,trl --out "$OUT/grpo_135m.json" > "$OUT/grpo_135m.log" 2>&1
grep -E "^\[|^\||FAILED|Error" "$OUT/grpo_135m.log" | tail -20
timeout 170 python3 -m bench.distill_vs_trl --shape smollm2-135m --steps 4 --warmup 1 \
  --runs cascadec-fast-reverse_kl,cascadec-fast-mopd,trl --out "$OUT/distill_135m.json" > "$OUT/distill_135m.log" 2>&1
grep -E "^\[|^\||FAILED|Error" "$OUT/distill_135m.log" | tail -20
