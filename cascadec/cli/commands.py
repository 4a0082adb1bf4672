"""One function per command: compile, lint, plan, graph, fmt, explain, run, status, report."""

from __future__ import annotations

import difflib
import functools
import os
import sys
import tempfile
from pathlib import Path
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console

from cascadec.cli.base import (
    EXIT_FINDINGS, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, GraphFormat, Launcher, OutputFormat, PlanFormat, app, emit, err,
    fail, format_option, guarded, has_errors, or_list, require_files, unreadable, write,
)
from cascadec.cli.views import natural_width, plan_table, problem_to_diagnostic
from cascadec.contract.narrow import keep_names
from cascadec.codes import CODES
from cascadec.compiler import CompileResult, compile_file, read_spec
from cascadec.contract.fsutil import atomic_write_text
from cascadec.contract.plan import TRACKERS, Plan
from cascadec.contract.suggest import suggest
from cascadec.diagnostics import Diagnostic
from cascadec.fmt import format_source
from cascadec.graph import GRAPH_FORMATS
from cascadec.lower import display_path
from cascadec.report_diagnostics import RENDERERS, diagnostic_url, sort_diagnostics

def _compile(spec: Path, build_data: bool = False) -> CompileResult:
    require_files([spec])
    return compile_file(spec, build_data=build_data)


def _plan_or_exit(spec: Path, fmt: OutputFormat = OutputFormat.full, build_data: bool = False) -> Plan:
    """Compile ``spec``; diagnostics go to stderr; exit 1 when it has errors. ``build_data``: see
    `compile_file`."""
    result = _compile(spec, build_data)
    emit(result.diagnostics, result.sources, fmt, to_stderr=True)
    if not result.ok or result.plan is None:
        raise typer.Exit(EXIT_FINDINGS)
    return result.plan


# ---------------------------------------------------------------- compile / lint


FORMAT_HELP = "Diagnostic output format."
#: `cascadec plan`'s columns left out first in a narrow terminal (the memory total `GiB/GPU` stays)
PLAN_OPTIONAL = ("act. (ckpt)", "KV cache", "frozen", "states GiB", "hash", "batch", "until")


@app.command("compile")
@guarded
def compile_cmd(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The `.cascade` file to compile.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory that receives `<name>/`.")] = Path("build"),
    fmt: Annotated[OutputFormat, format_option(OutputFormat, FORMAT_HELP)] = OutputFormat.full,
) -> None:
    """Check SPEC and write `OUT/<name>/`: plan.json and per-stage launch scripts and configs."""
    sys.stdout.write(f"{_render(_plan_or_exit(spec, fmt, build_data=True), out)}\n")


def _check_rewards(plan: Plan, sources: dict[str, str]) -> list[Diagnostic]:
    files = {display_path(path): path for path in sources}
    api = _api("--check-rewards")
    err(api.sandbox_level())
    return [problem_to_diagnostic(p, files) for p in api.check_rewards(plan)]


@app.command()
@guarded
def lint(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC", help="One or more `.cascade` files.")],
    fmt: Annotated[OutputFormat, format_option(OutputFormat, FORMAT_HELP)] = OutputFormat.full,
    warnings_as_errors: Annotated[
        bool, typer.Option("--warnings-as-errors", "-W", help="Exit 1 when there are warnings, too.")
    ] = False,
    check_rewards: Annotated[
        bool, typer.Option("--check-rewards", help="Also run the runtime's reward contract checks on each clean spec.")
    ] = False,
) -> None:
    """Check SPECS and report every problem; exit 0 clean, 1 findings, 2 usage or internal error.

    A path that is missing or a directory is reported on stderr and makes the exit code 2, but the other
    files are still checked and their diagnostics printed, so that a CI job reading the JSON, SARIF or
    GitHub output keeps the findings of the files that exist."""
    missing = []
    for spec in specs:
        problem = unreadable(spec)
        if problem is not None:
            err(f"error: {problem[0]}\nhelp: {problem[1]}")
            missing.append(spec)
    diagnostics: dict[Diagnostic, None] = {}  # ordered set: a shared import is reported once
    sources: dict[str, str] = {}
    for spec in (s for s in specs if s not in missing):
        result = compile_file(spec, build_data=True)
        diagnostics.update(dict.fromkeys(result.diagnostics))
        sources.update(result.sources)
        if check_rewards and result.ok and result.plan is not None:
            diagnostics.update(dict.fromkeys(_check_rewards(result.plan, result.sources)))
    found = sort_diagnostics(diagnostics)
    if found:
        write(RENDERERS[fmt.value](found, sources), fmt)
    elif fmt not in (OutputFormat.full, OutputFormat.concise):
        sys.stdout.write(RENDERERS[fmt.value]([], sources))
    elif not missing:
        n = len(specs)
        sys.stdout.write(f"all checks passed ({n} file{'s' if n != 1 else ''})\n")
    if missing:
        raise typer.Exit(EXIT_USAGE)
    failing = has_errors(found) or (warnings_as_errors and bool(found))
    raise typer.Exit(EXIT_FINDINGS if failing else EXIT_OK)


# ---------------------------------------------------------------- plan / graph


@app.command()
@guarded
def plan(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The `.cascade` file.")],
    fmt: Annotated[PlanFormat, format_option(PlanFormat, "A table, or the plan.json text.")] = PlanFormat.table,
) -> None:
    """Show the stages SPEC compiles to: parents, domains, steps, batch, memory per GPU, teachers, stop rules,
    hashes."""
    compiled = _plan_or_exit(spec)
    if fmt is PlanFormat.json:
        sys.stdout.write(compiled.to_json())
        return
    table = plan_table(compiled)
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        # Piped or captured output keeps every row on one line, whatever the width, so that it greps.
        console = Console(file=sys.stdout, highlight=False, width=natural_width(console, table))
    console.print(keep_names(table, console.width, "stage", "parent", optional=PLAN_OPTIONAL))


@app.command()
@guarded
def graph(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The `.cascade` file.")],
    fmt: Annotated[GraphFormat, format_option(GraphFormat, "Mermaid or Graphviz DOT.")] = GraphFormat.mermaid,
) -> None:
    """Print the stage graph of SPEC (teacher edges dashed)."""
    compiled = _plan_or_exit(spec)
    sys.stdout.write(GRAPH_FORMATS[fmt.value](compiled))


# ---------------------------------------------------------------- fmt / explain


@app.command("fmt")
@guarded
def fmt_cmd(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC", help="One or more `.cascade` files.")],
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; print the diff of each file that would change and exit 1.")] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Write nothing; print a unified diff; exit 1 on changes.")
    ] = False,
) -> None:
    """Rewrite SPECS in canonical layout, keeping comments."""
    require_files(specs)
    changed, failed = [], False
    for spec in specs:
        text = read_spec(str(spec))
        if isinstance(text, Diagnostic):
            emit([text], {}, OutputFormat.full, to_stderr=True)
            failed = True
            continue
        formatted, diagnostics = format_source(text, str(spec))
        if formatted is None:
            emit(diagnostics, {str(spec): text}, OutputFormat.full, to_stderr=True)
            failed = True
            continue
        if formatted == text:
            continue
        changed.append(spec)
        if diff or check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(keepends=True),
                    formatted.splitlines(keepends=True),
                    fromfile=f"{spec} (original)",
                    tofile=f"{spec} (formatted)",
                )
            )
            if check:
                err(f"would reformat {spec}")
        else:
            atomic_write_text(spec, formatted)
            err(f"reformatted {spec}")
    if failed:
        raise typer.Exit(EXIT_FINDINGS)
    if changed and (check or diff):
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
@guarded
def explain(code: Annotated[str, typer.Argument(metavar="CODE", help="A diagnostic code such as CAS301.")]) -> None:
    """Explain what a diagnostic code means and how to fix it."""
    entry = CODES.get(code.strip().upper())
    if entry is None:
        known = ", ".join(sorted(CODES))
        fail(f"unknown diagnostic code `{code}`", help=f"known codes: {known}")
    sys.stdout.write(
        f"{entry.code} ({entry.name}, {entry.severity}): {entry.summary}\n\n"
        f"{entry.explanation}\n\n"
        f"see {diagnostic_url(entry.code)}\n"
    )


# ---------------------------------------------------------------- run / status / report


def _api(command: str) -> ModuleType:
    """`runtime.api`, or exit 2 with a clear message when this installation has no runtime."""
    try:
        from runtime import api
    except ModuleNotFoundError as exc:
        if exc.name is None or not "runtime.api".startswith(exc.name):
            raise
        fail(f"{command} needs the runtime (`runtime.api`), which this installation does not have",
             help="install cascadec with its runtime")
    return api


def _runtime_exit(code: object) -> None:
    """Map the orchestrator's return value (0 ok, 1 a stage failed, 2 usage, 130 interrupted) to ours."""
    if not isinstance(code, int) or code == 0:
        return
    raise typer.Exit(EXIT_RUNTIME if code == 1 else code)


@app.command()
@guarded
def run(
    target: Annotated[
        Path,
        typer.Argument(
            metavar="TARGET", help="A `.cascade` spec, a build directory made by `cascadec compile`, or its plan.json."
        ),
    ],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Run directory (default `runs/<name>/`).")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where a spec is compiled to first.")] = Path("build"),
    nproc: Annotated[
        int | None, typer.Option("--nproc", min=1, help="Override every stage's processes per node.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run, skip or resume; run nothing.")
    ] = False,
    tracking: Annotated[
        str | None, typer.Option("--tracking", metavar="T1,T2",
                                 help="Experiment trackers for this run, overriding the spec's `tracking` "
                                      "(tensorboard, wandb, mlflow, trackio; empty: none).")
    ] = None,
    launcher: Annotated[Launcher, format_option(Launcher, "Run here, or submit the stages as Slurm jobs.",
                                                "--launcher")] = Launcher.local,
    partition: Annotated[str | None, typer.Option("--partition", help="Slurm partition (slurm launcher).")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Slurm account (slurm launcher).")] = None,
    time: Annotated[str | None, typer.Option("--time", help="Slurm time limit per job, e.g. 4:00:00.")] = None,
    qos: Annotated[str | None, typer.Option("--qos", help="Slurm QoS (slurm launcher).")] = None,
    signal_lead: Annotated[int | None, typer.Option(
        "--signal-lead", min=1, help="Seconds before the time limit that a job gets SIGTERM to checkpoint.")] = None,
    sbatch: Annotated[list[str] | None, typer.Option(
        "--sbatch", help="Another sbatch option for every job, e.g. --sbatch=--mem=64G (repeatable).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Slurm launcher: wait for the jobs, then print the scores.")
                    ] = False,
) -> None:
    """Run every stage of a cascade in order, skipping finished stages and resuming interrupted ones.

    `OUT` and the default run directory `runs/<name>/` are relative to the current directory, not to the
    spec. A dry run writes nothing: a spec is compiled into a temporary directory that is removed after.
    `--launcher slurm` submits each stage as a Slurm job instead (docs/slurm.md)."""
    slurm = {"partition": partition, "account": account, "time": time, "qos": qos, "signal_lead_s": signal_lead,
             "extra": tuple(sbatch or ())}
    _check_launcher(launcher, nproc, wait, slurm)
    submit = functools.partial(_submit, wait=wait, slurm=slurm) if launcher is Launcher.slurm else None
    if tracking is not None:
        _set_tracking(tracking)
    if not target.exists():
        fail(f"`{target}` does not exist", help="pass a `.cascade` file or a directory made by `cascadec compile`")
    if target.suffix == ".json" or target.is_dir():
        if target.is_dir() and not (target / "plan.json").is_file():
            fail(f"`{target}` holds no plan.json", help="run `cascadec compile SPEC` first, or pass the spec")
        _run_build(target, run_dir, nproc, dry_run, submit)
        return
    plan = _plan_or_exit(target, build_data=True)
    if not dry_run:
        _run_build(_render(plan, out), run_dir, nproc, dry_run, submit)
        return
    with tempfile.TemporaryDirectory(prefix="cascadec-dry-run-") as scratch:
        _run_build(_render(plan, Path(scratch)), run_dir, nproc, dry_run, submit)


def _set_tracking(value: str) -> None:
    """Hand ``--tracking`` to the stage processes through ``$CASCADEC_TRACKING`` (read by `runtime.tracking`)."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if name not in TRACKERS:
            hint = suggest(name, TRACKERS)
            fail(f"unknown tracker `{name}` in --tracking",
                 help=f"did you mean `{hint}`?" if hint else f"use {or_list(list(TRACKERS))}")
    os.environ["CASCADEC_TRACKING"] = ",".join(dict.fromkeys(names))


def _render(plan: Plan, out: Path) -> Path:
    """Write `out/<plan name>/` (`cascadec.render.render_plan`); exit 2 with a message when that fails."""
    from cascadec.render import RenderError, render_plan

    try:
        return render_plan(plan, out)
    except RenderError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write `{out}`: {exc.strerror or exc}", help="check that the directory is writable")


def _run_build(build: Path, run_dir: Path | None, nproc: int | None, dry_run: bool,
               submit: Callable[..., None] | None = None) -> None:
    if submit is not None:
        submit(build, run_dir, dry_run)
        return
    _runtime_exit(_api("`run`").run(build, run_dir=run_dir, nproc=nproc, dry_run=dry_run))


def _check_launcher(launcher: Launcher, nproc: int | None, wait: bool, slurm: dict[str, Any]) -> None:
    """Options of one launcher are refused with the other, never ignored."""
    if launcher is Launcher.slurm and nproc is not None:
        fail("`--nproc` applies to local runs", help="with `--launcher slurm` set `gpus` in the stage's `resources`")
    flags = {"partition": "--partition", "account": "--account", "time": "--time", "qos": "--qos",
             "signal_lead_s": "--signal-lead", "extra": "--sbatch", "wait": "--wait"}
    given = [flags[k] for k, v in {**slurm, "wait": wait}.items() if v]
    if launcher is Launcher.local and given:
        fail(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to `--launcher slurm`",
             help="add `--launcher slurm`, or drop them")


def _submit(build: Path, run_dir: Path | None, dry_run: bool, *, wait: bool, slurm: dict[str, Any]) -> None:
    """`cascadec run --launcher slurm` on a compiled build: `runtime.api.submit`."""
    api = _api("`run --launcher slurm`")
    _runtime_exit(api.submit(build, run_dir, options=api.SlurmOptions(**slurm), dry_run=dry_run, wait=wait))


def _require_run_dir(target: Path | None) -> Path:
    """The run directory ``target`` stands for: itself, the default run directory (``runs/<name>``) of a
    ``.cascade`` spec, or, when omitted, the only run under ``runs/``."""
    if target is None:
        runs = sorted(p.parent for p in Path("runs").glob("*/plan.json"))
        if len(runs) != 1:
            fail("no run under `runs/`" if not runs else f"{len(runs)} runs under `runs/`: "
                 + ", ".join(f"`{p}`" for p in runs), help="pass a run directory such as `runs/<name>`, or the spec")
        return runs[0]
    if target.suffix == ".cascade" and target.is_file():
        run_dir = Path("runs") / _plan_or_exit(target).name
        if not (run_dir / "plan.json").is_file():
            fail(f"`{target}` has not run here: no run directory `{run_dir}`",
                 help=f"start it with `cascadec run {target}`, or pass the run directory instead of the spec (one "
                      "made with `--run-dir`, or from another working directory)")
        return run_dir
    if not target.is_dir():
        fail(f"`{target}` is not a directory", help="pass a run directory such as `runs/<name>`, or the spec")
    return target


RUN_ARG = typer.Argument(metavar="[RUN_DIR|SPEC]", help="A run directory (`runs/<name>/`) or the spec that made "
                         "it (its default run directory); omitted: the only run under `runs/`.")


@app.command()
@guarded
def status(run_dir: Annotated[Path | None, RUN_ARG] = None) -> None:
    """Show each stage's state in a run directory: pending, running, done or failed, step, stop reason."""
    _runtime_exit(_api("`status`").status(_require_run_dir(run_dir)))


@app.command()
@guarded
def cancel(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory submitted to Slurm.")],
) -> None:
    """Cancel the Slurm jobs of a run directory; running stages checkpoint first, and `cascadec run` resumes."""
    api = _api("`cancel`")
    try:
        jobs = api.cancel(_require_run_dir(run_dir))
    except api.UserError as exc:
        fail(str(exc))
    sys.stdout.write(f"cancelled jobs {', '.join(jobs)}\n" if jobs else "no queued or running jobs\n")


@app.command()
@guarded
def report(
    run_dir: Annotated[Path | None, RUN_ARG] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output directory (default `RUN_DIR/report/`).")
    ] = None,
) -> None:
    """Draw the cascade chart and training curves of a run; write one HTML page; print the score table."""
    run_dir = _require_run_dir(run_dir)
    api = _api("`report`")
    try:
        api.report(run_dir, out)
    except api.UserError as exc:
        fail(str(exc))


@app.command()
@guarded
def lsp() -> None:
    """Start the `.cascade` language server on stdin/stdout (for editors; see editors/vscode)."""
    try:
        from cascadec.lsp.server import serve
    except ModuleNotFoundError as exc:
        if exc.name not in ("pygls", "lsprotocol"):
            raise
        fail("the language server needs pygls", help="pip install 'cascadec[lsp]'")
    serve()


def main() -> None:
    """Entry point for ``python -m cascadec`` and ``python -m cascadec.cli``."""
    app()
