"""Compile-speed benchmark: cold-process `cascadec lint` of one spec, and one `lint` of 200 specs.

    python bench/compile.py [--runs 10] [--copies 200] [--spec specs/nemotron-cascade-2.cascade]

Measures, each as the median of ``--runs`` fresh processes (wall clock, `time.perf_counter`):

1. ``python -c pass``: the interpreter's own start-up, the floor under every CLI call;
2. ``python -c "import cascadec.cli"``: start-up plus imports;
3. ``python -m cascadec.cli lint SPEC``: a cold lint of the Nemotron-Cascade 2 spec;
4. ``python -m cascadec.cli lint --format concise DIR/*.cascade``: one process linting ``--copies``
   specs generated from the shipped specs (renamed copies, changed numbers, misspelt references and
   dropped lines, so that clean and failing files are both exercised).

Writes ``bench/results/compile.md`` (atomically) with the commands, the machine, the versions and the
numbers. This reports figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cascadec.contract.fsutil import atomic_write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "compile.md"
CLI = [sys.executable, "-m", "cascadec.cli"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run should leave .pyc files behind
    return env


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(argv: list[str], runs: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU (user + system) seconds of ``runs`` fresh processes, after one warm-up run that fills
    the bytecode and page caches, and the exit code of the last run. CPU time barely moves when other
    processes share the cores; wall time does."""
    code = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True).returncode
    wall, cpu = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), _child_cpu()
        code = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True).returncode
        wall.append(time.perf_counter() - start)
        cpu.append(_child_cpu() - cpu_start)
    return wall, cpu, code


# ---------------------------------------------------------------- spec generation


def _mutate(text: str, rng: random.Random, index: int) -> tuple[str, str]:
    """One generated spec and the name of the change made to it."""
    text = re.sub(r'cascade\s+"([^"]*)"', lambda m: f'cascade "{m.group(1)}-{index}"', text, count=1)
    choice = rng.choice(["copy", "numbers", "misspell", "drop-line"])
    if choice == "numbers":
        text = re.sub(r"\bsteps\s*=\s*\d+", lambda m: f"steps = {rng.randint(1, 500)}", text)
    elif choice == "misspell":
        names = re.findall(r"\bstage\s+([A-Za-z_]\w*)", text)
        if names:
            victim = rng.choice(names)
            refs = [m.start() for m in re.finditer(rf"\(({victim})\)", text)]
            if refs:
                at = rng.choice(refs) + 1
                text = text[:at] + victim[::-1] + text[at + len(victim) :]
    elif choice == "drop-line":
        lines = text.splitlines(keepends=True)
        code_lines = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
        del lines[rng.choice(code_lines)]
        text = "".join(lines)
    return text, choice


def generate_specs(sources: list[Path], count: int, out: Path, seed: int = 0) -> dict[str, int]:
    """Write ``count`` specs into ``out``; return how many of each kind of change were made."""
    rng = random.Random(seed)
    kinds: dict[str, int] = {}
    texts = [p.read_text(encoding="utf-8") for p in sources]
    for i in range(count):
        text, kind = _mutate(texts[i % len(texts)], rng, i)
        kinds[kind] = kinds.get(kind, 0) + 1
        (out / f"spec_{i:03d}.cascade").write_text(text, encoding="utf-8")
    return kinds


# ---------------------------------------------------------------- report


def machine() -> str:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}; {os.cpu_count()} logical CPUs ({usable} usable by this process); {platform.platform()}"


def versions() -> str:
    names = ["cascadec", "lark", "pydantic", "typer", "rich", "jinja2"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"Python {platform.python_version()}; " + ", ".join(found)


def _row(label: str, measured: tuple[list[float], list[float], int]) -> str:
    wall, cpu, _ = measured
    ms = [f"{x * 1000:.0f}" for x in (statistics.median(wall), min(wall), max(wall), statistics.median(cpu))]
    return f"| {label} | {' | '.join(ms)} | {len(wall)} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per measurement (median reported)")
    parser.add_argument("--copies", type=int, default=200, help="generated specs for the many-file lint")
    parser.add_argument("--spec", type=Path, default=Path("specs/nemotron-cascade-2.cascade"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    spec = args.spec if args.spec.is_absolute() else ROOT / args.spec
    rel_spec = os.path.relpath(spec, ROOT)
    sources = sorted((ROOT / "specs").glob("*.cascade"))
    many_runs = max(3, args.runs // 3)

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    baseline = time_command([sys.executable, "-c", "pass"], args.runs)
    imports = time_command([sys.executable, "-c", "import cascadec.cli"], args.runs)
    single = time_command([*CLI, "lint", rel_spec], args.runs)
    with tempfile.TemporaryDirectory(prefix="cascadec-bench-") as tmp:
        kinds = generate_specs(sources, args.copies, Path(tmp))
        files = sorted(str(p) for p in Path(tmp).glob("*.cascade"))
        many = time_command([*CLI, "lint", "--format", "concise", *files], many_runs)
        last = subprocess.run([*CLI, "lint", "--format", "concise", *files], cwd=ROOT, env=_env(),
                              capture_output=True, text=True)  # fmt: skip
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    failing = len({line.split(":", 1)[0] for line in last.stdout.splitlines() if ": error[" in line})
    summary = last.stdout.strip().splitlines()[-1] if last.stdout.strip() else "(no output)"
    per_spec = (statistics.median(many[1]) - statistics.median(imports[1])) / args.copies

    lines = [
        "# Compile benchmark",
        "",
        f"Command: `python bench/compile.py --runs {args.runs} --copies {args.copies} --spec {rel_spec}`",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        f"- 1-minute load average: {load_before:.1f} before, {load_after:.1f} after (a load above the CPU count "
        "means other processes shared the cores, so the times are upper bounds)",
        f"- Lint of `{rel_spec}` exits {single[2]}; the {args.copies}-spec lint exits {many[2]} "
        f"({failing} of {args.copies} files with errors; last line: `{summary}`).",
        f"- Generated specs (from {', '.join(p.name for p in sources)}, seed 0): "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
        "",
        "Fresh processes, in milliseconds: wall clock (median, min, max) and CPU time (user + system, median).",
        "",
        "| measurement | wall median | wall min | wall max | CPU median | runs |",
        "|---|---|---|---|---|---|",
        _row("`python -c pass` (interpreter start-up)", baseline),
        _row("`python -c 'import cascadec.cli'`", imports),
        _row(f"`cascadec lint {rel_spec}` (cold process)", single),
        _row(f"`cascadec lint --format concise` of {args.copies} specs (one process)", many),
        "",
        f"CPU time per spec in the {args.copies}-spec run, after start-up and imports: {per_spec * 1000:.1f} ms.",
        "",
        "`cascadec` here is `python -m cascadec.cli`, which runs the same code as the console script.",
        "",
    ]
    text = "\n".join(lines)
    atomic_write_text(args.out if args.out.is_absolute() else ROOT / args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
