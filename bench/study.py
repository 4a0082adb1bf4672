"""The issue-20 study: does MOPD bring back a domain that a later stage regressed in fewer steps than
continued GRPO? Runs the seeds of a study spec and writes the report.

    python bench/study.py examples/study/study.cascade --seeds 5 --parallel 5 --runs runs/study \
        --out bench/results/study.md
    python bench/study.py --from-runs runs/study/seed0 runs/study/seed1 --out bench/results/study.md

The first form runs the spec once per seed through the real CLI (`cascadec compile`, then `cascadec run`
with its own run directory ``RUNS/seedN``; the spec's top-level ``seed = N`` line is rewritten per seed).
Giving the same command again resumes: finished stages are skipped and a stage cut short restarts from its
last checkpoint. ``--parallel N`` runs N seeds at once, spread over the visible GPUs (several small runs
share one GPU). Both forms then write the report (``bench/study_report.py``: tables, curves, one cascade
chart per seed, the paired verdict); the statistics are in ``bench/study_stats.py``. A seed that failed or
has not finished both arms is listed in the report and left out of the analysis.

The study's design is in the header of examples/study/study.cascade.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The names below are the driver's and its tests' view of the analysis (after the repo root is importable).
from bench.study_report import report  # noqa: E402
from bench.study_stats import StudyError  # noqa: E402

CLI = [sys.executable, "-m", "cascadec.cli"]
SEED_LINE = re.compile(r"^(?P<indent>[ \t]*)seed[ \t]*=[ \t]*-?[0-9_]+[ \t]*(?P<rest>#.*)?$", re.MULTILINE)


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


def run_seeds(spec: Path, seeds: int, runs: Path, parallel: int) -> tuple[list[Path], list[str]]:
    """Run seeds 0..seeds-1 with ``cascadec run`` (a re-run resumes or skips finished stages), up to
    ``parallel`` at once; with ``parallel > 1`` the k-th run of a batch sees only GPU ``k % gpus``
    (``CUDA_VISIBLE_DEVICES``; several small runs may share a GPU) and logs to ``RUN/study.log`` instead of
    this terminal. Returns the run directories and a line for each seed whose run failed (the others go on).
    Raises StudyError when a seed fails to compile."""
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
    return [run_dir for _, run_dir in jobs], failed


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
    ap.add_argument("--seeds", type=int, default=5, help="run seeds 0..S-1 (default 5)")
    ap.add_argument("--runs", type=Path, default=None, help="parent of the seedN run directories "
                    "(default runs/<spec stem>)")
    ap.add_argument("--parallel", type=int, default=1, help="seeds run at once, spread over the visible GPUs (default 1)")
    ap.add_argument("--from-runs", nargs="+", type=Path, metavar="DIR", help="analyse existing run directories")
    ap.add_argument("--out", type=Path, default=Path("bench/results/study.md"), help="the report (default %(default)s)")
    ap.add_argument("--mopd", default="mopd", help="the distillation arm's stage (default mopd)")
    ap.add_argument("--grpo", default="grpo_mix", help="the continued-GRPO arm's stage (default grpo_mix)")
    ap.add_argument("--domain-a", default="arith", help="the regressed domain to recover (default arith)")
    ap.add_argument("--title", default="Study: does MOPD recover a regressed domain faster than continued GRPO?")
    ap.add_argument("--note", default="", help="a paragraph under the title (e.g. what machine, what size)")
    args = ap.parse_args(argv)
    failed: list[str] = []
    try:
        if args.seeds < 1 or args.parallel < 1:
            raise StudyError("--seeds and --parallel must be at least 1")
        if args.from_runs:
            run_dirs = list(args.from_runs)
        elif args.spec is not None:
            if not args.spec.is_file():
                raise StudyError(f"`{args.spec}` does not exist\nhelp: pass a .cascade spec")
            runs = args.runs or Path("runs") / args.spec.stem
            run_dirs, failed = run_seeds(args.spec, args.seeds, runs, args.parallel)
            # A seed that failed before writing its eval records has nothing to report.
            run_dirs = [d for d in run_dirs if (d / "evals.jsonl").is_file()]
        else:
            raise StudyError("nothing to do\nhelp: pass a spec to run, or --from-runs DIR...")
        report(run_dirs, args.out, mopd=args.mopd, grpo=args.grpo, domain_a=args.domain_a, title=args.title,
               note=args.note, command=_command(args))
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if failed:
            print(f"error: `cascadec run` failed for {', '.join(failed)}\nhelp: the runs are resumable: fix the "
                  "cause (see each run's stage logs) and run this again", file=sys.stderr)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())