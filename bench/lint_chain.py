"""Lint time of long stage chains: `cascadec lint` of generated 500, 5,000 and 10,000-stage chains.

    python bench/lint_chain.py [--sizes 500 5000 10000] [--runs 3]

Each size is one spec whose stages form a single chain (`s{i} = grpo(s{i-1})`, every third stage a
`distill` with a teacher, so the teacher checks run too), linted by a fresh `python -m cascadec.cli lint`
process. Reported per size: the median wall and CPU (user + system) seconds of `--runs` processes, CPU
seconds per 1,000 stages, and the ratio to the smallest size, next to the ratio of stage counts (linear
growth keeps the two equal). Also the peak memory of a lint of a spec with one 5 MB string literal, against
the file's size. Writes `bench/results/lint-chain.md` (atomically); it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "compiler"))

from cascadec.contract.fsutil import atomic_write_text  # noqa: E402
from test_scaling import chain  # noqa: E402

LINT = [sys.executable, "-m", "cascadec.cli", "lint"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def _timed(path: Path) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak RSS KiB, exit code) of one lint process."""
    start = time.perf_counter()
    proc = subprocess.Popen([*LINT, str(path)], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 10000])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp, f"chain{n}.cascade")
            path.write_text(chain(n, distill_every=3))
            runs = [_timed(path) for _ in range(args.runs)]
            rows.append((n, statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                         {r[3] for r in runs}))
        big = Path(tmp, "string.cascade")
        big.write_text(chain(10).replace('prompt = "a?"', 'prompt = "' + "x" * (5 << 20) + '"'))
        empty = Path(tmp, "empty.cascade")
        empty.write_text(chain(10))
        base_rss, big_rss = _timed(empty)[2], _timed(big)[2]
        size = big.stat().st_size
    load = os.getloadavg()[0]
    n0, _, cpu0, _ = rows[0]
    lines = ["# Lint time of long stage chains", "",
             f"Command: `python bench/lint_chain.py --sizes {' '.join(map(str, args.sizes))} --runs {args.runs}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"{platform.system()} {platform.release()}; 1-minute load average {load:.1f} at the end (the "
             "machine is shared: wall times are upper bounds, CPU times move less).", "",
             "Each spec is one chain of grpo stages, every third one a distill with a teacher; a fresh "
             "`python -m cascadec.cli lint` process per run, median of the runs.", "",
             "| stages | wall s | CPU s | CPU s per 1,000 stages | CPU ratio | stage ratio | exit |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for n, wall, cpu, codes in rows:
        lines.append(f"| {n:,} | {wall:.1f} | {cpu:.1f} | {cpu / n * 1000:.2f} | {cpu / cpu0:.1f} | {n / n0:.0f} | "
                     f"{', '.join(map(str, sorted(codes)))} |")
    lines += ["", f"Memory: a 10-stage spec with one 5 MB string literal ({size:,} bytes) peaks at "
              f"{big_rss / 1024:.0f} MiB resident against {base_rss / 1024:.0f} MiB for the same spec without "
              f"it: {(big_rss - base_rss) * 1024 / size:.1f}x the file's size above the interpreter's own.", ""]
    atomic_write_text(ROOT / "bench" / "results" / "lint-chain.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
