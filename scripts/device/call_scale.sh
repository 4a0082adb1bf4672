# Device call for issue 8 (nvidia-h200-x2): the FSDP2 GPU tests on 1 and 2 GPUs, then bench/scale.py (GRPO +
# MOPD under FSDP2, Qwen2.5-1.5B shape, random weights) for N = 1 (CUDA_VISIBLE_DEVICES=0) and N = 2, each
# through the launch.sh that `cascadec compile` renders. Every part has a hard time limit (the whole call ends
# within about 560 s, inside one call's 600 s); bench/scale.py writes its JSON and table after every stage,
# so a part cut short keeps what finished. Session 2's limits (120 s and 95 s) let only the 1-GPU GRPO stage
# finish (bench/results/scale-gpu.md). Carry: .whl build/scalewhl. Run: bash scripts/device/call_scale.sh
set -o pipefail
source scripts/device/setup.sh
# `cascadec compile` needs typer and rich, the stage loop tensorboard (protobuf, absl); build/scalewhl holds
# them as wheels (made as in docs/gpu.md, with the versions of the CPU machine: typer 0.29.2 click 8.5.1
# rich 15.0.0 markdown-it-py 4.3.0 mdurl 0.1.2 pygments 2.20.0 shellingham 1.5.4 tensorboard 2.21.0
# tensorboard-data-server 0.7.2 protobuf 7.36.2 absl-py 2.5.1 markdown 3.11.3 werkzeug 3.1.8 markupsafe 3.0.3
# six 1.17.0 typing_extensions 4.16.0), installed only where the image lacks one of them.
python3 -c "import typer, rich, jinja2, yaml, tensorboard, google.protobuf, absl" 2>/dev/null || {
  echo "installing build/scalewhl"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    build/scalewhl/*.whl || { echo "scalewhl install failed"; exit 1; }
}
python3 -c "import typer, rich, tensorboard; from torch.utils.tensorboard import SummaryWriter" || exit 1
head -3 "$OUT/env.txt"; grep -E "^(python|transformers|accelerate)" "$OUT/env.txt"
timeout 70 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fsdp2.py 2>&1 | tee "$OUT/fsdp2-tests.log" \
  | grep -E "world [12] |passed|failed|skipped|Error" | tail -8
scale=(python3 -m bench.scale --shape qwen2.5-1.5b --prompts 16 --group 8 --new 128 --steps 3 --warmup 1
       --work /tmp/scale --out "$OUT/scale-gpu.json")
CUDA_VISIBLE_DEVICES=0 timeout 240 "${scale[@]}" --gpus 1 --budget 225 > "$OUT/scale-n1.log" 2>&1
echo "N=1 exit $?"
timeout 230 "${scale[@]}" --gpus 2 --budget 215 > "$OUT/scale-n2.log" 2>&1
echo "N=2 exit $?"
cat "$OUT/scale-gpu.md" 2>/dev/null | sed -n '1,14p'
for n in 1 2; do cp /tmp/scale/n$n/run.log "$OUT/scale-n$n-stages.log" 2>/dev/null; done
grep -hE "^\[(grpo|mopd)\]|Error|error:" /tmp/scale/n*/run.log 2>/dev/null | tail -20
