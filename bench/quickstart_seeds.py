"""Issue 16's acceptance run: the README's quickstart command for several seeds, one after the other, with
wall time and load average, then each seed's score table, each stage's change against its parent (± its
standard error, ``runtime.changes``: paired over the same eval items, or binomial and unpaired for records
without per-item scores) and the two criteria:

* every GRPO stage raises its own domain's held-out score by at least 2 standard errors of the change;
* the MOPD student scores at least 95% of the best teacher's score on every domain.

Each seed runs ``cascadec run`` on a copy of ``examples/quickstart.cascade`` whose ``seed = 0`` is replaced,
in its own run directory under ``--work``, from a shell whose only setting is ``PYTHONPATH``. Pass
``--fresh-cache`` to point ``CASCADEC_CACHE`` at an empty directory, so that the first seed includes the
one-time conversion of the packaged model (as on a fresh clone).

Usage (from the repository root)::

    python -m bench.quickstart_seeds --seeds 0,1,2 --out bench/results/quickstart-seeds.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from cascadec.compiler import compile_file
from cascadec.contract.plan import Plan
from runtime.changes import change
from runtime.evals import item_groups, load_eval_sets
from runtime.orchestrator import load_plan
from runtime.state import RunDir, last_eval_points, read_eval_records

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "quickstart.cascade"


def run_seed(seed: int, work: Path, env: dict[str, str], source: Path = SPEC) -> dict:
    spec = work / f"quickstart-seed{seed}.cascade"
    spec.write_text(re.sub(r"^  seed = \d+$", f"  seed = {seed}", source.read_text(), count=1, flags=re.MULTILINE))
    load, start, cpu = os.getloadavg(), time.perf_counter(), _children_cpu_s()
    command = [sys.executable, "-m", "cascadec.cli", "run", str(spec), "--run-dir", str(work / f"seed{seed}"),
               "-o", str(work / "build")]
    out = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=False)
    return {"seed": seed, "spec": spec, "rc": out.returncode, "wall_s": time.perf_counter() - start,
            "cpu_s": _children_cpu_s() - cpu, "load_start": load, "load_end": os.getloadavg(),
            "log": out.stdout + out.stderr}


def _children_cpu_s() -> float:
    """User + system CPU seconds of finished child processes (the run and its stage processes): unlike wall
    time, it does not grow when other jobs share the cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_item_groups(plan: Plan, records: list[dict]) -> list[dict]:
    """``records`` with ``item_groups`` (``runtime.evals.item_groups``) added where missing, from the plan's
    eval sets (generated or read as the run read them), for run directories written before records had
    them; a record whose item count differs from its eval set's is left as it is."""
    groups = {f"{s.domain}.{s.spec.name}": item_groups(s.samples) for s in load_eval_sets(plan)}
    out = []
    for r in records:
        g = groups.get(f"{r['domain']}.{r['eval']}")
        fill = "item_groups" not in r and g is not None and len(g) == len(r.get("item_scores") or [])
        out.append({**r, "item_groups": g} if fill else r)
    return out


def verdicts(spec: Path | Plan, run_dir: Path) -> list[str]:
    """Lines: the GRPO criterion per GRPO stage, the MOPD criterion per domain (``spec``: the spec file, or
    the plan the run directory recorded)."""
    plan = spec if isinstance(spec, Plan) else compile_file(spec).plan
    points = last_eval_points(with_item_groups(plan, read_eval_records(RunDir(run_dir).evals_jsonl)[0]))
    lines = []
    for stage in plan.stages:
        keys = [k for k in points.get(stage.name, {}) if k.split(".", 1)[0] in (stage.domains or {})]
        if stage.kind == "grpo":
            for key in keys:
                c = change(points[stage.name][key], points[stage.parent][key])
                ok = c.delta >= 2 * c.se
                kind = ("paired, clustered" if c.clustered else "paired") if c.paired else "binomial, unpaired"
                lines.append(f"{stage.name} on {key}: {c.delta:+.3f} ± {c.se:.3f} ({kind}) -> "
                             f"{'PASS' if ok else 'FAIL'} (>= 2 SE)")
        if stage.kind == "distill":
            resolved = json.loads((run_dir / "stages" / stage.name / "teachers.json").read_text())["teachers"]
            entry = RunDir(run_dir).stage_state(stage.name)
            if stage.params.self_taught(stage.parent, resolved.values()) and entry.get("step") == 0:
                lines.append(f"{stage.name}: took no step ({entry.get('stop_reason')})")  # a pass saying nothing
            for key in keys:
                teacher = resolved.get(key.split(".", 1)[0], resolved.get("default"))
                best = points[teacher][key]["score"]
                mine = points[stage.name][key]["score"]
                ok = mine >= 0.95 * best
                lines.append(f"{stage.name} on {key}: {mine:.3f} vs its teacher {teacher} {best:.3f} "
                             f"({mine / best if best else float('nan'):.0%}) -> {'PASS' if ok else 'FAIL'} (>= 95%)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", default="/tmp/quickstart-seeds")
    ap.add_argument("--fresh-cache", action="store_true")
    ap.add_argument("--spec", type=Path, default=SPEC, help="the cascade to run (default: the quickstart)")
    ap.add_argument("--out", default="bench/results/quickstart-seeds.md")
    ap.add_argument("--reread", nargs="+", type=Path, metavar="RUN_DIR",
                    help="print the criteria of finished run directories (with today's standard errors) and stop")
    args = ap.parse_args()
    if args.reread:
        for run_dir in args.reread:
            print(f"## {run_dir}", *(f"- {v}" for v in verdicts(load_plan(run_dir / "plan.json"), run_dir)), sep="\n")
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if args.fresh_cache:
        env["CASCADEC_CACHE"] = str(work / "cache")
    lines = [f"# Quickstart seeds: `python -m bench.quickstart_seeds {' '.join(sys.argv[1:])}`", "",
             f"{os.cpu_count()} CPUs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", ""]
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run_seed(seed, work, env, args.spec.resolve())
        minutes, seconds = divmod(round(r["wall_s"]), 60)
        lines += [f"## seed {seed}: exit {r['rc']}, wall {minutes} min {seconds} s, "
                  f"load average {r['load_start'][0]:.1f} at the start, {r['load_end'][0]:.1f} at the end", "",
                  "```", r["log"].split("eval scores after each stage", 1)[-1].strip()[-6000:], "```", ""]
        if r["rc"] == 0:
            lines += [f"- {v}" for v in verdicts(r["spec"], work / f"seed{seed}")] + [""]
        Path(args.out).write_text("\n".join(lines) + "\n")
        print("\n".join(lines[-12:]), flush=True)


if __name__ == "__main__":
    main()
