"""The issue-7 study: per-stage gains, and how fast MOPD vs continued GRPO recover a regressed domain.

    python bench/study.py examples/study/study.cascade --seeds 3 [--parallel 3] --runs runs/study \
        --out bench/results/study.md
    python bench/study.py --from-runs runs/study/seed0 runs/study/seed1 --out bench/results/study.md

The first form runs the spec once per seed through the real CLI (`cascadec compile`, then `cascadec run`
with its own run directory ``RUNS/seedN``; the spec's top-level ``seed = N`` line is rewritten per seed, and
a re-run resumes or skips finished stages; ``--parallel N`` runs N seeds at once, spread over the visible
GPUs). Both forms then read each run's ``plan.json`` and ``evals.jsonl`` and write a Markdown report
(atomically) with:

1. the per-stage, per-domain table: each eval's score after each stage, mean ± std across seeds;
2. both arms' eval curves (a PNG next to the report), the arms' parent's final score as step 0;
3. how far stage B dropped domain A below its teacher (and whether beyond eval noise), and the steps each
   arm needs to bring domain A back to 95% of its teacher's score;
4. MOPD minus GRPO, paired by seed, with a t interval and a bootstrap interval, and a plain verdict.

The analysis functions (everything between "analysis" and "report") are pure and unit-tested
(tests/study/). The study's design and the choice of domains are in examples/study/study.cascade.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cascadec.contract.fsutil import atomic_write_text  # noqa: E402  (after the repo root is importable)
from runtime.state import read_jsonl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_analysis import (  # noqa: E402,F401  (bench/ is on sys.path; names re-exported for tests/study)
    analyse_run, arm_curve, ArmResult, BASE, binomial_se, CONFIDENCE, curve_mean, last_scores, load_run,
    paired_difference, plan_stage, RECOVERY, regression_is_real, Run, spread, Spread, stage_order, stage_table,
    steps_cell, steps_summary, steps_to_reach, StudyError, teacher_candidates, teacher_score, verdict,
)

CLI = [sys.executable, "-m", "cascadec.cli"]
SEED_LINE = re.compile(r"^(?P<indent>[ \t]*)seed[ \t]*=[ \t]*-?[0-9_]+[ \t]*(?P<rest>#.*)?$", re.MULTILINE)


# ------------------------------------------------------------------ report


def plot_curves(runs: Sequence[Run], *, arms: Sequence[str], parent: str, keys: Sequence[str],
                targets: dict[str, float], path: Path) -> None:
    """One panel per eval key: each arm's per-seed curves (thin) and their mean (thick); domain A's panel
    also shows the 95%-of-teacher target (mean over seeds). Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    colours = dict(zip(arms, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for ax, key in zip(axes[0], keys):
        for arm in arms:
            curves = [arm_curve(run.evals, arm, parent, key) for run in runs]
            for curve in curves:
                ax.plot(*zip(*curve), color=colours[arm], alpha=0.3, linewidth=1)
            common = sorted(set.intersection(*(set(dict(c)) for c in curves)))
            if common:
                ax.plot(common, [statistics.fmean(dict(c)[s] for c in curves) for s in common],
                        color=colours[arm], linewidth=2.5, marker="o", markersize=3,
                        label=f"{arm} (mean of {len(curves)})")
        if key in targets:
            ax.axhline(targets[key], color="grey", linestyle="--", label=f"{RECOVERY:.0%} of teacher")
        ax.set_title(key)
        ax.set_xlabel(f"steps after `{parent}`")
        ax.set_ylabel("eval score")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def render_markdown(runs: Sequence[Run], results: Sequence[ArmResult], *, arms: tuple[str, str], parent: str,
                    key_a: str, candidates: Sequence[str], png: str, title: str, note: str,
                    command: str) -> str:
    """The report's Markdown text (see the module docstring for its sections)."""
    plan = runs[0].plan
    lines = [f"# {title}", ""] + ([note, ""] if note else []) + [
        f"Spec `{plan['name']}`, {len(runs)} seed(s): " + ", ".join(f"`{r.path}`" for r in runs) + ".",
        f"Written by `{command}`.", ""]
    lines += _stage_section(runs)
    lines += [f"## Recovery curves of the two arms (both start from `{parent}`)", "", f"![curves]({png})", ""]
    lines += _steps_section(results, arms, parent, key_a, candidates)
    lines += _comparison_section(results, arms, key_a)
    return "\n".join(lines)


def _stage_section(runs: Sequence[Run]) -> list[str]:
    table = stage_table([last_scores(r.evals) for r in runs], stage_order(runs[0].plan))
    keys = sorted({k for row in table.values() for k in row})
    items = {f"{r['domain']}.{r['eval']}": int(r.get("n", 0)) for run in runs for r in run.evals}
    lines = ["## Score after each stage (mean ± std across seeds)", "",
             "| stage | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {stage} | " + " | ".join(_cell(row.get(k), len(runs)) for k in keys) + " |"
              for stage, row in table.items()]
    sizes = ", ".join(f"`{k}` {items[k]} items (one item = {1 / items[k]:.3f})" for k in keys if items.get(k))
    return lines + ["", ("Each cell is the stage's last eval point (its final checkpoint), over every seed unless "
                         f"marked `(n=k)` (a run that lacks the stage). Eval sets: {sizes}; a pass@1 score p on n "
                         "items has a binomial standard error of sqrt(p(1-p)/n)."), ""]


def _steps_section(results: Sequence[ArmResult], arms: tuple[str, str], parent: str, key_a: str,
                   candidates: Sequence[str]) -> list[str]:
    mopd, grpo = arms
    lines = [f"## Steps to bring `{key_a}` back to {RECOVERY:.0%} of its teacher's score", "",
             (f"Teacher score: the best last score on `{key_a}` among {', '.join(f'`{c}`' for c in candidates)} "
              f"(the MOPD stage's teacher for domain A), per seed; start: `{parent}`'s score, where both arms "
              "begin. Steps are counted at eval points."), "",
             f"| seed run | teacher | start | drop | target | {mopd} | {grpo} |", "|---|" + "---:|" * 6]
    for r in results:
        drop = f"{r.teacher - r.start:+.3f}" + ("" if regression_is_real(r.teacher, r.start, r.items) else " (noise)")
        lines.append(f"| `{r.seed_run}` | {r.teacher:.3f} | {r.start:.3f} | {drop} | {r.target:.3f} | "
                     f"{steps_cell(r.steps[mopd], r.budget[mopd])} | {steps_cell(r.steps[grpo], r.budget[grpo])} |")
    return lines + ["", f"- `{mopd}`: {steps_summary(results, mopd)}", f"- `{grpo}`: {steps_summary(results, grpo)}",
                    (f"- a drop marked (noise) is within {CONFIDENCE:.0%} eval noise of zero (two-score binomial "
                     "standard error): that seed's stage B did not measurably hurt domain A."), ""]


def _comparison_section(results: Sequence[ArmResult], arms: tuple[str, str], key_a: str) -> list[str]:
    mopd, grpo = arms
    lines = ["## MOPD vs continued GRPO (paired by seed)", "",
             "| measure | MOPD | GRPO | MOPD − GRPO | t interval | bootstrap |", "|---|---:|---:|---:|---:|---:|"]
    keys = sorted({k for r in results for arm in arms for k in r.final[arm]})
    comparisons = [(f"mean `{key_a}` over the arm (area under the curve)",
                    [r.area[mopd] for r in results], [r.area[grpo] for r in results])]
    comparisons += [(f"last `{key}`", [r.final[mopd].get(key, math.nan) for r in results],
                     [r.final[grpo].get(key, math.nan) for r in results]) for key in keys]
    verdicts = []
    for what, a, b in comparisons:
        p = paired_difference(a, b)
        lines.append(f"| {what} | {spread(a)} | {spread(b)} | {p.mean:+.3f} | {_interval(p.t_interval)} | "
                     f"{_interval(p.bootstrap)} |")
        if not verdicts:
            verdicts.append(verdict(p, what=f"recovering `{key_a}` (mean score over the arm's steps)"))
    faster = sum(1 for r in results if _rank_steps(r, mopd) < _rank_steps(r, grpo))
    slower = sum(1 for r in results if _rank_steps(r, mopd) > _rank_steps(r, grpo))
    verdicts.append(f"MOPD reached {RECOVERY:.0%} of the teacher's `{key_a}` score sooner than continued GRPO "
                    f"in {faster} of {len(results)} seeds, later in {slower}, at the same step in "
                    f"{len(results) - faster - slower} (\"not reached\" counts as later than any step).")
    both = [r for r in results if r.steps[mopd] is not None and r.steps[grpo] is not None]
    if both:
        p = paired_difference([float(r.steps[mopd]) for r in both], [float(r.steps[grpo]) for r in both])
        verdicts.append(verdict(p, what=f"steps to {RECOVERY:.0%} (seeds where both arms got there)",
                                higher_is_better=False))
    real = sum(regression_is_real(r.teacher, r.start, r.items) for r in results)
    if real < len(results):
        verdicts.append(f"Caveat: stage B hurt domain A beyond eval noise in only {real} of {len(results)} seeds; "
                        "where it did not, there was nothing to recover and the arms' difference on domain A "
                        "measures drift, not recovery.")
    return lines + ["", "**Verdict.** " + " ".join(verdicts), ""]


def _interval(iv: tuple[float, float] | None) -> str:
    return f"[{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else "-"


def _cell(value: Spread | None, runs: int) -> str:
    if value is None:
        return "-"
    return str(value) if value.n == runs else f"{value} (n={value.n})"


def _rank_steps(r: ArmResult, arm: str) -> float:
    return math.inf if r.steps[arm] is None else float(r.steps[arm])


def report(run_dirs: Sequence[Path], out: Path, *, mopd: str, grpo: str, domain_a: str, title: str,
           note: str, command: str) -> str:
    """Analyse ``run_dirs`` and write ``out`` (Markdown) and ``out``'s ``-curves.png``; returns the text."""
    runs = [load_run(Path(d)) for d in run_dirs]
    if not runs:
        raise StudyError("no run directories\nhelp: pass --from-runs DIR... or a spec to run")
    plan = runs[0].plan
    parents = {plan_stage(plan, mopd)["parent"], plan_stage(plan, grpo)["parent"]}
    if len(parents) != 1:
        raise StudyError(f"the arms `{mopd}` and `{grpo}` start from different stages ({', '.join(sorted(parents))})"
                         "\nhelp: both arms must be children of the same stage")
    parent = parents.pop()
    candidates = teacher_candidates(plan, mopd, domain_a)
    evals = [e["name"] for e in plan["domains"].get(domain_a, {}).get("evals", [])]
    if not evals:
        raise StudyError(f"domain `{domain_a}` has no eval in plan `{plan['name']}`\nhelp: pass --domain-a")
    key_a = f"{domain_a}.{evals[0]}"
    results = [analyse_run(r.evals, arms=(mopd, grpo), parent=parent, key_a=key_a, candidates=candidates,
                           name=str(r.path)) for r in runs]
    keys = sorted({k for r in results for arm in (mopd, grpo) for k in r.final[arm]})
    png = out.with_name(out.stem + "-curves.png")
    plot_curves(runs, arms=(mopd, grpo), parent=parent, keys=keys,
                targets={key_a: statistics.fmean(r.target for r in results)}, path=png)
    text = render_markdown(runs, results, arms=(mopd, grpo), parent=parent, key_a=key_a, candidates=candidates,
                           png=png.name, title=title, note=note, command=command)
    atomic_write_text(out, text)
    return text


# ------------------------------------------------------------------ driver


def with_seed(spec_text: str, seed: int) -> str:
    """The spec with its one top-level ``seed = N`` line set to ``seed``. Raises StudyError unless exactly
    one ``seed = ...`` line exists."""
    found = SEED_LINE.findall(spec_text)
    if len(found) != 1:
        raise StudyError(f"expected exactly one `seed = N` line in the spec, found {len(found)}\n"
                         "help: put `seed = 0` on its own line inside `cascade { }`")
    return SEED_LINE.sub(lambda m: f"{m['indent']}seed = {seed}" + (f"  {m['rest']}" if m["rest"] else ""),
                         spec_text)


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def compile_seed(spec: Path, seed: int, runs: Path) -> tuple[str, Path]:
    """Compile ``spec`` with ``seed`` into ``runs/seedN/build``; returns (build directory, run directory).

    The seeded copy is written next to the spec (so its relative paths resolve) and removed after compiling.
    Raises StudyError when compiling fails."""
    run_dir = runs / f"seed{seed}"
    copy = spec.with_name(f".{spec.stem}.seed{seed}.{os.getpid()}.cascade")
    try:
        copy.write_text(with_seed(spec.read_text(), seed))
        done = subprocess.run([*CLI, "compile", str(copy), "-o", str(run_dir / "build")], env=_env(), text=True,
                              check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        copy.unlink(missing_ok=True)
    if done.returncode != 0:
        raise StudyError(f"`cascadec compile` failed for seed {seed}:\n{done.stdout.strip()}")
    return done.stdout.strip().splitlines()[-1], run_dir


def visible_gpus() -> int:
    """How many CUDA devices this process may use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_seeds(spec: Path, seeds: int, runs: Path, parallel: int) -> list[Path]:
    """Run seeds 0..seeds-1 with ``cascadec run`` (a re-run resumes or skips finished stages), up to
    ``parallel`` at once; with ``parallel > 1`` the k-th run of a batch sees only GPU ``k % gpus``
    (``CUDA_VISIBLE_DEVICES``; several small runs may share a GPU) and logs to ``RUN/study.log`` instead of
    this terminal. Returns the run directories.
    Raises StudyError when a seed fails (after the others have finished)."""
    jobs = [compile_seed(spec, seed, runs) for seed in range(seeds)]
    gpus = visible_gpus()
    failed = []
    for start in range(0, len(jobs), parallel):
        with contextlib.ExitStack() as stack:
            procs = []
            for slot, (target, run_dir) in enumerate(jobs[start : start + parallel]):
                print(f"running {target} in {run_dir}", flush=True)
                env, log = _env(), None
                if parallel > 1:
                    if gpus:
                        env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
                    run_dir.mkdir(parents=True, exist_ok=True)
                    log = stack.enter_context(open(run_dir / "study.log", "a"))
                cmd = [*CLI, "run", target, "--run-dir", str(run_dir)]
                procs.append((run_dir, subprocess.Popen(cmd, env=env, stdout=log, stderr=log)))
            failed += [f"`{run_dir}` (exit {proc.returncode})" for run_dir, proc in procs if proc.wait() != 0]
    if failed:
        raise StudyError(f"`cascadec run` failed for {', '.join(failed)}\n"
                         "help: the runs are resumable: fix the cause (see each run's stage logs) and run this again")
    return [run_dir for _, run_dir in jobs]


def _command(args: argparse.Namespace) -> str:
    """The command that reproduces the report, without the free text of --title and --note."""
    argv = ["python", "bench/study.py"]
    if args.from_runs:
        argv += ["--from-runs", *map(str, args.from_runs)]
    else:
        argv += [str(args.spec), "--seeds", str(args.seeds), "--parallel", str(args.parallel)]
        argv += ["--runs", str(args.runs)] if args.runs else []
    argv += ["--out", str(args.out), "--mopd", args.mopd, "--grpo", args.grpo, "--domain-a", args.domain_a]
    return shlex.join(argv)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", type=Path, help="the study spec to run (omit with --from-runs)")
    ap.add_argument("--seeds", type=int, default=3, help="run seeds 0..S-1 (default 3)")
    ap.add_argument("--runs", type=Path, default=None, help="parent of the seedN run directories "
                    "(default runs/<spec stem>)")
    ap.add_argument("--parallel", type=int, default=1, help="seeds run at once, spread over the visible GPUs (default 1)")
    ap.add_argument("--from-runs", nargs="+", type=Path, metavar="DIR", help="analyse existing run directories")
    ap.add_argument("--out", type=Path, default=Path("bench/results/study.md"), help="the report (default %(default)s)")
    ap.add_argument("--mopd", default="mopd", help="the distillation arm's stage (default mopd)")
    ap.add_argument("--grpo", default="grpo_mix", help="the continued-GRPO arm's stage (default grpo_mix)")
    ap.add_argument("--domain-a", default="arith", help="the regressed domain to recover (default arith)")
    ap.add_argument("--title", default="Study: per-stage gains and MOPD recovery (issue 7)")
    ap.add_argument("--note", default="", help="a paragraph under the title (e.g. what machine, what size)")
    args = ap.parse_args(argv)
    try:
        if args.seeds < 1 or args.parallel < 1:
            raise StudyError("--seeds and --parallel must be at least 1")
        if args.from_runs:
            run_dirs = list(args.from_runs)
        elif args.spec is not None:
            if not args.spec.is_file():
                raise StudyError(f"`{args.spec}` does not exist\nhelp: pass a .cascade spec")
            runs = args.runs or Path("runs") / args.spec.stem
            run_dirs = run_seeds(args.spec, args.seeds, runs, args.parallel)
        else:
            raise StudyError("nothing to do\nhelp: pass a spec to run, or --from-runs DIR...")
        report(run_dirs, args.out, mopd=args.mopd, grpo=args.grpo, domain_a=args.domain_a, title=args.title,
               note=args.note, command=_command(args))
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
