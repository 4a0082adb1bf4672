# Runs (or resumes) the 3-seed study for at most $1 seconds from the current directory. The study runs in
# its own session so that the deadline stops the seeds' `cascadec run` processes too; they resume from
# their last checkpoint in the next call.
setsid python3 bench/study.py examples/study/study.cascade --seeds 3 --parallel 3 --runs /tmp/runs/study \
  --out "$OUT/study.md" --note "GPU run: 3 seeds on nvidia-h200-x2 (seeds 0 and 2 share GPU 0)" \
  > "$OUT/study.log" 2>&1 &
pid=$!
( sleep "$1"; kill -TERM -- -$pid 2>/dev/null ) &
timer=$!
wait $pid; echo "study exit $?"
kill $timer 2>/dev/null
sleep 5
tail -5 "$OUT/study.log"
for f in /tmp/runs/study/seed*/study.log; do echo "== $f"; tail -4 "$f"; done
