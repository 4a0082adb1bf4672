# Study chain, call 3 (only if call 2's deadline stopped the study): resume it on the same warm machine.
# Carry: .whl [build/snap]. Run: SNAP=build/snap bash scripts/device/study_3.sh [seconds, default 540]
set -o pipefail
source scripts/device/setup.sh
cd "${SNAP:-.}" && export PYTHONPATH=/tmp/site:$PWD
bash scripts/device/study_run.sh "${1:-540}"
tar czf "$OUT/runs.tgz" --exclude=ckpt --exclude=final --exclude='*.tmp*' -C /tmp runs
