"""The typer app, exit codes, output formats and the error plumbing every command shares."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console

from cascadec import __version__
from cascadec.contract.suggest import suggest
from cascadec.diagnostics import Diagnostic
from cascadec.report_diagnostics import RENDERERS, highlight_full

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


class Launcher(StrEnum):
    local = "local"
    slurm = "slurm"


class PlanFormat(StrEnum):
    table = "table"
    json = "json"


E = TypeVar("E", bound=StrEnum)


def choice(kind: type[E]) -> Callable[[str | E], E]:
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
            raise typer.BadParameter(f"`{value}` is unknown; use {or_list(names)}{near}") from None

    return parse


def or_list(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def format_option(kind: type[StrEnum], help: str, flag: str = "--format") -> Any:
    return typer.Option(flag, parser=choice(kind), metavar="[" + "|".join(m.value for m in kind) + "]",
                        help=help)


# ---------------------------------------------------------------- plumbing


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def fail(message: str, code: int = EXIT_USAGE, help: str | None = None) -> NoReturn:
    """Print ``error: message`` (and ``help: ...``) to stderr and exit with ``code``."""
    err(f"error: {message}")
    if help:
        err(f"help: {help}")
    raise typer.Exit(code)


def guarded(fn: F) -> F:
    """Run a command so that only clean messages and exit codes reach the user."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`cascadec plan X | head`). Point stdout at devnull so that the
            # interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE").
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_OK) from None
        except Exception as exc:
            if os.environ.get("CASCADEC_DEBUG"):
                traceback.print_exc()
            err(
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


def unreadable(path: Path) -> tuple[str, str] | None:
    """Why ``path`` cannot be a spec, with a fix hint, or None when it is a file."""
    if not path.exists():
        return f"`{path}` does not exist", "check the path; specs usually end in `.cascade`"
    if path.is_dir():
        return f"`{path}` is a directory", "pass a `.cascade` file"
    return None


def require_files(paths: Iterable[Path]) -> None:
    for path in paths:
        problem = unreadable(path)
        if problem is not None:
            fail(problem[0], help=problem[1])


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def write(text: str, fmt: OutputFormat, *, to_stderr: bool = False) -> None:
    """Write rendered diagnostics; human formats are coloured on a terminal unless NO_COLOR is set."""
    stream = sys.stderr if to_stderr else sys.stdout
    human = fmt in (OutputFormat.full, OutputFormat.concise)
    if human and stream.isatty() and not os.environ.get("NO_COLOR"):
        Console(file=stream, highlight=False, soft_wrap=True).print(highlight_full(text), end="")
    else:
        stream.write(text)


def emit(diagnostics: list[Diagnostic], sources: dict[str, str], fmt: OutputFormat, *, to_stderr: bool) -> None:
    if diagnostics:
        write(RENDERERS[fmt.value](diagnostics, sources), fmt, to_stderr=to_stderr)
