"""The ``cascadec`` command line: compile, lint, plan, graph, fmt, explain, run, status, report.

Exit codes (ruff/ty convention):

====  =====================================================================
0     success; warnings allowed unless ``--warnings-as-errors``
1     findings: error diagnostics (or warnings with ``-W``), files ``fmt --check`` would change
2     usage, configuration or I/O error, or an internal error of cascadec
3     ``run`` only: the runtime failed after a successful compile
====  =====================================================================

No Python traceback reaches the user: every command runs under `_guarded`, which turns an unexpected
exception into ``internal error: ... (please report)`` and exit 2 (``CASCADEC_DEBUG=1`` shows it).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console
from rich.table import Table

from cascadec import __version__
from cascadec.checks.memory import memory_lower_bound
from cascadec.compiler import CompileResult, compile_file, read_spec
from cascadec.diagnostics import Diagnostic, Label, Severity, Span
from cascadec.contract.fsutil import atomic_write_text
from cascadec.graph import GRAPH_FORMATS
from cascadec.lower import display_path
from cascadec.contract.plan import Condition, Plan, Stage, TeacherRef
from cascadec.report_diagnostics import RENDERERS, diagnostic_url, highlight_full, sort_diagnostics
from cascadec.contract.suggest import suggest

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3

app = typer.Typer(
    name="cascadec",
    help="Compile, check and run multi-stage LLM post-training cascades written in `.cascade` files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    full = "full"
    concise = "concise"
    json = "json"
    github = "github"
    sarif = "sarif"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


class PlanFormat(StrEnum):
    table = "table"
    json = "json"


E = TypeVar("E", bound=StrEnum)


def _choice(kind: type[E]) -> Callable[[str | E], E]:
    """A `--format` parser whose error names the bad value and the valid ones in plain words (typer's own
    enum check words it as a pydantic validation error)."""
    names = [m.value for m in kind]

    def parse(value: str | E) -> E:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except ValueError:
            hint = suggest(str(value), names)
            near = f"; did you mean `{hint}`?" if hint else ""
            raise typer.BadParameter(f"`{value}` is unknown; use {_or_list(names)}{near}") from None

    return parse


def _or_list(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def _format_option(kind: type[StrEnum], help: str) -> Any:
    return typer.Option("--format", parser=_choice(kind), metavar="[" + "|".join(m.value for m in kind) + "]",
                        help=help)


# ---------------------------------------------------------------- plumbing


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def _fail(message: str, code: int = EXIT_USAGE, help: str | None = None) -> NoReturn:
    """Print ``error: message`` (and ``help: ...``) to stderr and exit with ``code``."""
    _err(f"error: {message}")
    if help:
        _err(f"help: {help}")
    raise typer.Exit(code)


def _guarded(fn: F) -> F:
    """Run a command so that only clean messages and exit codes reach the user."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`cascadec plan X | head`). Point stdout at devnull so that the
            # interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE").
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_OK) from None
        except Exception as exc:
            if os.environ.get("CASCADEC_DEBUG"):
                traceback.print_exc()
            _err(
                f"internal error: {type(exc).__name__}: {exc} (please report this bug with the command and spec; "
                "set CASCADEC_DEBUG=1 to see the traceback)"
            )
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"cascadec {__version__}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Compile, check and run multi-stage LLM post-training cascades written in `.cascade` files."""


def _unreadable(path: Path) -> tuple[str, str] | None:
    """Why ``path`` cannot be a spec, with a fix hint, or None when it is a file."""
    if not path.exists():
        return f"`{path}` does not exist", "check the path; specs usually end in `.cascade`"
    if path.is_dir():
        return f"`{path}` is a directory", "pass a `.cascade` file"
    return None


def _require_files(paths: Iterable[Path]) -> None:
    for path in paths:
        problem = _unreadable(path)
        if problem is not None:
            _fail(problem[0], help=problem[1])


def _compile(spec: Path) -> CompileResult:
    _require_files([spec])
    return compile_file(spec)


def _has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def _write(text: str, fmt: OutputFormat, *, to_stderr: bool = False) -> None:
    """Write rendered diagnostics; human formats are coloured on a terminal unless NO_COLOR is set."""
    stream = sys.stderr if to_stderr else sys.stdout
    human = fmt in (OutputFormat.full, OutputFormat.concise)
    if human and stream.isatty() and not os.environ.get("NO_COLOR"):
        Console(file=stream, highlight=False, soft_wrap=True).print(highlight_full(text), end="")
    else:
        stream.write(text)


def _emit(diagnostics: list[Diagnostic], sources: dict[str, str], fmt: OutputFormat, *, to_stderr: bool) -> None:
    if diagnostics:
        _write(RENDERERS[fmt.value](diagnostics, sources), fmt, to_stderr=to_stderr)


def _plan_or_exit(spec: Path, fmt: OutputFormat = OutputFormat.full) -> Plan:
    """Compile ``spec``; diagnostics go to stderr; exit 1 when it has errors."""
    result = _compile(spec)
    _emit(result.diagnostics, result.sources, fmt, to_stderr=True)
    if not result.ok or result.plan is None:
        raise typer.Exit(EXIT_FINDINGS)
    return result.plan


# ---------------------------------------------------------------- compile / lint


FORMAT_HELP = "Diagnostic output format."


@app.command("compile")
@_guarded
def compile_cmd(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The `.cascade` file to compile.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory that receives `<name>/`.")] = Path("build"),
    fmt: Annotated[OutputFormat, _format_option(OutputFormat, FORMAT_HELP)] = OutputFormat.full,
) -> None:
    """Check SPEC and write `OUT/<name>/`: plan.json and per-stage launch scripts and configs."""
    sys.stdout.write(f"{_render(_plan_or_exit(spec, fmt), out)}\n")


def _reward_contract_code() -> tuple[str, str, Severity]:
    """Code, name and severity of a broken reward contract (CAS5xx: checks that need the runtime)."""
    from cascadec.codes import CODES

    entry = CODES["CAS500"]
    return entry.code, entry.name, entry.severity


def problem_to_diagnostic(problem: Any, files: dict[str, str] | None = None) -> Diagnostic:
    """A `runtime.rewards.contracts.Problem` (domain, kind, message, hint, origin) as a `Diagnostic`
    whose span is the reward's (or its domain's) location in the spec. ``files`` maps a path as recorded in
    the plan (`cascadec.lower.display_path`) to the path the file was read from."""
    code, name, severity = _reward_contract_code()
    labels: tuple[Label, ...] = ()
    if problem.origin is not None:
        o = problem.origin
        span = Span((files or {}).get(o.path, o.path), o.line, o.column, o.end_line, o.end_column)
        labels = (Label(span, f"reward of domain `{problem.domain}`"),)
    message = f"reward `{problem.kind}` of domain `{problem.domain}` breaks its contract: {problem.message}"
    return Diagnostic(code, name, severity, message, labels, help=problem.hint)


def _check_rewards(plan: Plan, sources: dict[str, str]) -> list[Diagnostic]:
    try:
        contracts = importlib.import_module("runtime.rewards.contracts")
    except ModuleNotFoundError as exc:
        if exc.name not in ("runtime", "runtime.rewards", "runtime.rewards.contracts"):
            raise
        _fail(
            "--check-rewards needs `runtime.rewards.contracts`, which this installation does not have",
            help="install cascadec with its runtime, or lint without --check-rewards",
        )
    files = {display_path(path): path for path in sources}
    return [problem_to_diagnostic(p, files) for p in contracts.check_rewards(plan)]


@app.command()
@_guarded
def lint(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC", help="One or more `.cascade` files.")],
    fmt: Annotated[OutputFormat, _format_option(OutputFormat, FORMAT_HELP)] = OutputFormat.full,
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
        problem = _unreadable(spec)
        if problem is not None:
            _err(f"error: {problem[0]}\nhelp: {problem[1]}")
            missing.append(spec)
    diagnostics: dict[Diagnostic, None] = {}  # ordered set: a shared import is reported once
    sources: dict[str, str] = {}
    for spec in (s for s in specs if s not in missing):
        result = compile_file(spec)
        diagnostics.update(dict.fromkeys(result.diagnostics))
        sources.update(result.sources)
        if check_rewards and result.ok and result.plan is not None:
            diagnostics.update(dict.fromkeys(_check_rewards(result.plan, result.sources)))
    found = sort_diagnostics(diagnostics)
    if found:
        _write(RENDERERS[fmt.value](found, sources), fmt)
    elif fmt not in (OutputFormat.full, OutputFormat.concise):
        sys.stdout.write(RENDERERS[fmt.value]([], sources))
    elif not missing:
        n = len(specs)
        sys.stdout.write(f"all checks passed ({n} file{'s' if n != 1 else ''})\n")
    if missing:
        raise typer.Exit(EXIT_USAGE)
    failing = _has_errors(found) or (warnings_as_errors and bool(found))
    raise typer.Exit(EXIT_FINDINGS if failing else EXIT_OK)


# ---------------------------------------------------------------- plan / graph


def _format_teachers(teachers: dict[str, TeacherRef]) -> str:
    parts = []
    for route, ref in sorted(teachers.items()):
        if ref.kind == "stage":
            parts.append(f"{route}={ref.stage}")
        else:
            parts.append(f"{route}=best({', '.join(ref.candidates)} by {ref.domain}.{ref.eval})")
    return "\n".join(parts)


def _format_condition(c: Condition) -> str:
    if c.kind == "steps":
        return f"steps {c.op} {c.value:g}"
    metric = f"{c.domain}.{c.eval}"
    if c.kind == "plateau":
        return f"plateau({metric}, patience={c.patience}, min_delta={c.min_delta:g})"
    if c.relative_to:
        scale = "" if c.value == 1 else f"{c.value:g} × "
        return f"{metric} {c.op} {scale}teacher({c.relative_to}).{c.eval}"
    return f"{metric} {c.op} {c.value:g}"


def _format_batch(stage: Stage) -> str:
    p = stage.params
    if p.group_size == 1:
        return str(p.rows_per_step)
    return f"{p.rows_per_step} × {p.group_size} ({p.sequences_per_step})"


def _format_memory(plan: Plan, stage: Stage) -> str:
    """The lower bound of `cascadec.checks.memory` (model states and frozen models), blank when unknown."""
    need = memory_lower_bound(plan.base, stage)
    return "" if need is None else f"≥ {need / 1024**3:.1f} GiB"


def plan_table(plan: Plan) -> Table:
    """The rich table `cascadec plan` prints: one row per stage, in run order."""
    table = Table(title=f"cascade {plan.name!r}: {len(plan.stages)} stages from {plan.base.name}")
    for column in ("stage", "kind", "parent", "domains", "steps", "batch", "memory/GPU", "teachers", "until", "hash"):
        table.add_column(column, justify="right" if column in ("steps", "memory/GPU") else "left")
    for s in plan.stages:
        domains = "\n".join(f"{d} {w:.3g}" for d, w in s.domains.items())
        table.add_row(
            s.name + (" (branch)" if s.branch else ""),
            s.kind,
            s.parent,
            domains,
            str(s.params.steps),
            _format_batch(s),
            _format_memory(plan, s),
            _format_teachers(s.teachers),
            "\nor ".join(_format_condition(c) for c in s.until),
            s.hash[:8],
        )
    return table


def _natural_width(console: Console, table: Table) -> int:
    """Columns ``table`` needs to print without wrapping any cell."""
    unbounded = console.options.update_width(sys.maxsize)
    return console.measure(table, options=unbounded).maximum


@app.command()
@_guarded
def plan(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The `.cascade` file.")],
    fmt: Annotated[PlanFormat, _format_option(PlanFormat, "A table, or the plan.json text.")] = PlanFormat.table,
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
        console = Console(file=sys.stdout, highlight=False, width=_natural_width(console, table))
    console.print(table)


@app.command()
@_guarded
def graph(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The `.cascade` file.")],
    fmt: Annotated[GraphFormat, _format_option(GraphFormat, "Mermaid or Graphviz DOT.")] = GraphFormat.mermaid,
) -> None:
    """Print the stage graph of SPEC (teacher edges dashed)."""
    compiled = _plan_or_exit(spec)
    sys.stdout.write(GRAPH_FORMATS[fmt.value](compiled))


# ---------------------------------------------------------------- fmt / explain


def _formatter() -> Callable[[str, str], tuple[str | None, list[Diagnostic]]]:
    try:
        module = importlib.import_module("cascadec.fmt")
    except ModuleNotFoundError as exc:
        if exc.name != "cascadec.fmt":
            raise
        _fail("the formatter (`cascadec.fmt`) is not available in this installation")
    return module.format_source  # type: ignore[no-any-return]


@app.command("fmt")
@_guarded
def fmt_cmd(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC", help="One or more `.cascade` files.")],
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Write nothing; print a unified diff; exit 1 on changes.")
    ] = False,
) -> None:
    """Rewrite SPECS in canonical layout, keeping comments."""
    _require_files(specs)
    format_source = _formatter()
    changed, failed = [], False
    for spec in specs:
        text = read_spec(str(spec))
        if isinstance(text, Diagnostic):
            _emit([text], {}, OutputFormat.full, to_stderr=True)
            failed = True
            continue
        formatted, diagnostics = format_source(text, str(spec))
        if formatted is None:
            _emit(diagnostics, {str(spec): text}, OutputFormat.full, to_stderr=True)
            failed = True
            continue
        if formatted == text:
            continue
        changed.append(spec)
        if diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(keepends=True),
                    formatted.splitlines(keepends=True),
                    fromfile=f"{spec} (original)",
                    tofile=f"{spec} (formatted)",
                )
            )
        elif check:
            _err(f"would reformat {spec}")
        else:
            atomic_write_text(spec, formatted)
            _err(f"reformatted {spec}")
    if failed:
        raise typer.Exit(EXIT_FINDINGS)
    if changed and (check or diff):
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
@_guarded
def explain(code: Annotated[str, typer.Argument(metavar="CODE", help="A diagnostic code such as CAS301.")]) -> None:
    """Explain what a diagnostic code means and how to fix it."""
    from cascadec.codes import CODES

    entry = CODES.get(code.strip().upper())
    if entry is None:
        known = ", ".join(sorted(CODES))
        _fail(f"unknown diagnostic code `{code}`", help=f"known codes: {known}")
    sys.stdout.write(
        f"{entry.code} ({entry.name}, {entry.severity}): {entry.summary}\n\n"
        f"{entry.explanation}\n\n"
        f"see {diagnostic_url(entry.code)}\n"
    )


# ---------------------------------------------------------------- run / status / report


def _runtime(module: str) -> Any:
    """Import a runtime module, or exit 2 with a clear message when this installation lacks it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        _fail(f"`{module}` is not available in this installation", help="install cascadec with its runtime")


def _runtime_exit(code: object) -> None:
    """Map the orchestrator's return value (0 ok, 1 a stage failed, 2 usage, 130 interrupted) to ours."""
    if not isinstance(code, int) or code == 0:
        return
    raise typer.Exit(EXIT_RUNTIME if code == 1 else code)


@app.command()
@_guarded
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
) -> None:
    """Run every stage of a cascade in order, skipping finished stages and resuming interrupted ones.

    `OUT` and the default run directory `runs/<name>/` are relative to the current directory, not to the
    spec. A dry run writes nothing: a spec is compiled into a temporary directory that is removed after."""
    if not target.exists():
        _fail(f"`{target}` does not exist", help="pass a `.cascade` file or a directory made by `cascadec compile`")
    if target.suffix == ".json" or target.is_dir():
        if target.is_dir() and not (target / "plan.json").is_file():
            _fail(f"`{target}` holds no plan.json", help="run `cascadec compile SPEC` first, or pass the spec")
        _run_build(target, run_dir, nproc, dry_run)
        return
    plan = _plan_or_exit(target)
    if not dry_run:
        _run_build(_render(plan, out), run_dir, nproc, dry_run)
        return
    with tempfile.TemporaryDirectory(prefix="cascadec-dry-run-") as scratch:
        _run_build(_render(plan, Path(scratch)), run_dir, nproc, dry_run)


def _render(plan: Plan, out: Path) -> Path:
    """Write `out/<plan name>/` (`cascadec.render.render_plan`); exit 2 with a message when that fails."""
    from cascadec.render import RenderError, render_plan

    try:
        return render_plan(plan, out)
    except RenderError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write `{out}`: {exc.strerror or exc}", help="check that the directory is writable")


def _run_build(build: Path, run_dir: Path | None, nproc: int | None, dry_run: bool) -> None:
    orchestrator = _runtime("runtime.orchestrator")
    _runtime_exit(orchestrator.run(build, run_dir=run_dir, nproc=nproc, dry_run=dry_run))


def _require_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        _fail(f"`{run_dir}` is not a directory", help="pass a run directory such as `runs/<name>`")


@app.command()
@_guarded
def status(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (`runs/<name>/`).")],
) -> None:
    """Show each stage's state in a run directory: pending, running, done or failed, step, stop reason."""
    _require_run_dir(run_dir)
    _runtime_exit(_runtime("runtime.orchestrator").status(run_dir))


@app.command()
@_guarded
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (`runs/<name>/`).")],
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output directory (default `RUN_DIR/report/`).")
    ] = None,
) -> None:
    """Draw the cascade chart and training curves of a run; write one HTML page; print the score table."""
    _require_run_dir(run_dir)
    module = _runtime("runtime.report")
    try:
        module.report(run_dir, out)
    except module.ReportError as exc:
        _fail(str(exc))


def main() -> None:
    """Entry point for ``python -m cascadec``."""
    app()


if __name__ == "__main__":
    main()
