"""What the Slurm launcher adds per stage over a local run, on a tiny cascade (issue 22).

The same compiled cascade (a random-init tiny Llama; SFT -> SFT -> SFT on CPU, 4 steps each, one eval per
stage) is run with ``cascadec run`` (local: one process per stage, no torchrun) and with ``cascadec run
--launcher slurm --wait`` on a real one-node Slurm cluster started for the benchmark
(tests/slurm/minicluster.py), alternately, ``--reps`` times each, into fresh run directories. Reported:

* ``local_s``, ``slurm_s``: wall seconds of the whole command (compile excluded: the build is made once);
* ``per_stage_s``: ``(slurm_s - local_s) / jobs``, where ``jobs`` counts the base-eval job as one stage;
* ``queue_gap_s``: the largest gap between one job's end and the next one's start, from Slurm's own job
  records (whole seconds), i.e. what the scheduler adds; the rest of the overhead is each job's own start
  (the decision step's Python, ``srun``, ``torchrun``), measured by difference.

Usage: ``python -m bench.slurm_overhead --reps 2 --out bench/results/slurm-overhead.md`` (root; needs
slurm-wlm and munge).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "slurm"))

import minicluster  # noqa: E402

from cascadec.contract.plan import (  # noqa: E402
    DataSource, Domain, EvalSpec, ModelRef, Optim, Plan, Resources, RewardSpec, Schedule, SFTParams, Stage,
)
from cascadec.render import render_plan  # noqa: E402
from runtime.orchestrator import run  # noqa: E402
from runtime.slurm import slurmcli  # noqa: E402
from runtime.slurm.submit import submit  # noqa: E402
from runtime.state import RunDir  # noqa: E402

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                   "num_attention_heads": 2, "num_key_value_heads": 1})


def tiny_cascade(stages: int = 3, steps: int = 4) -> Plan:
    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(8)]
    domain = Domain(name="add", train=DataSource(kind="inline", rows=rows), reward=RewardSpec(kind="exact"),
                    evals=[EvalSpec(name="held", data=DataSource(kind="inline", rows=rows[:4]), max_tokens=4)])
    chain = [Stage(name=f"s{i}", kind="sft", parent="base" if i == 1 else f"s{i - 1}", domains={"add": 1.0},
                   params=SFTParams(optim=Optim(lr=Schedule(peak=1e-3)), steps=steps, batch_size=2),
                   resources=Resources(device="cpu"), save_every=100) for i in range(1, stages + 1)]
    return Plan(name="tiny-bench", base=TINY, domains={"add": domain}, stages=chain)


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def time_local(build: Path, rd: RunDir) -> float:
    t0 = time.perf_counter()
    rc = run(build, rd.root, console=_quiet())
    if rc != 0:
        raise SystemExit(f"local run failed ({rc}); see {rd.root}")
    return time.perf_counter() - t0


def time_slurm(build: Path, rd: RunDir) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    rc = submit(build, rd.root, wait=True, console=_quiet())
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"Slurm run failed ({rc}); see {rd.root}/slurm")
    jobs = list(slurmcli.read_jobs(rd).values())
    spans = []
    for job in jobs:
        record = slurmcli.run_tool(["scontrol", "-o", "show", "job", job])
        spans.append(tuple(datetime.fromisoformat(re.search(rf"{k}=(\S+)", record).group(1))
                           for k in ("StartTime", "EndTime")))
    gaps = [(b[0] - a[1]).total_seconds() for a, b in zip(spans, spans[1:])]
    return wall, len(jobs), max(gaps, default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write the results to")
    args = parser.parse_args()
    reason = minicluster.unavailable()
    if reason:
        raise SystemExit(reason)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cluster = minicluster.start(kill_wait=20)
    os.environ["SLURM_CONF"] = str(cluster.conf)
    work = Path(tempfile.mkdtemp(prefix="slurm-bench-"))
    rows = []
    try:
        build = render_plan(tiny_cascade(), work / "build")
        for rep in range(args.reps):
            local = time_local(build, RunDir(work / f"local-{rep}"))
            slurm, jobs, gap = time_slurm(build, RunDir(work / f"slurm-{rep}"))
            rows.append({"rep": rep, "local_s": local, "slurm_s": slurm, "jobs": jobs, "queue_gap_s": gap,
                         "per_stage_s": (slurm - local) / jobs, "load": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(r["per_stage_s"] for r in rows)
    print(f"median Slurm overhead per stage: {median:.1f} s")
    if args.out:
        args.out.write_text(_markdown(rows, median))
    return 0


def _markdown(rows: list[dict], median: float) -> str:
    lines = [
        "# Slurm launcher overhead per stage (tiny cascade)", "",
        "Command: `python -m bench.slurm_overhead --reps 2 --out bench/results/slurm-overhead.md` "
        f"({datetime.now():%Y-%m-%d}), on {platform.node()}: {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, {slurmcli.run_tool(['sbatch', '--version']).strip()}, a one-node cluster "
        "started by the benchmark (tests/slurm/minicluster.py). The same build (3 SFT stages of a random-init tiny "
        "Llama, 4 steps each, CPU) run locally and through Slurm, alternately. `jobs` counts the base-eval job.", "",
        "| rep | local (s) | Slurm (s) | jobs | overhead per job (s) | largest queue gap (s) | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['rep']} | {r['local_s']:.1f} | {r['slurm_s']:.1f} | {r['jobs']} | {r['per_stage_s']:.1f} | "
                     f"{r['queue_gap_s']:.0f} | {r['load']:.1f} |")
    lines += ["", f"Median overhead per stage: **{median:.1f} s**.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
