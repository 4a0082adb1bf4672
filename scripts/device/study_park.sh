# Issue-20 study, device call 1 of 2 (one GPU: nvidia-h100-x1 or nvidia-h200; about 20 s of command time):
# install the carried wheels into /tmp/site and park the first part of the SmolLM2 GGUF in /tmp/gguf, both
# kept on the machine while it stays warm (30 s after a call). Call 2, scripts/device/call_study.sh, must
# follow at once. The GGUF (92 MiB) is larger than one call may carry (64 MiB), hence two calls.
# Make the carried folders first: bash scripts/device/make_study_carry.sh
# Carry: build/studywhl build/gguf-a. Run: bash scripts/device/study_park.sh
set -o pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  build/studywhl/*.whl || { echo "wheel install failed"; exit 1; }
PYTHONPATH=/tmp/site:$PWD python3 -c "import lark, pydantic, reasoning_gym, jsonschema, gguf, typer, rich, \
tensorboard, matplotlib, scipy; import cascadec.cli, runtime.entry" || { echo "imports failed"; exit 1; }
mkdir -p /tmp/gguf && cp build/gguf-a/part /tmp/gguf/a && touch /tmp/site/.study-parked
ls -la /tmp/gguf; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
