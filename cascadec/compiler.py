"""The compiler API: `.cascade` text → `Plan` plus diagnostics. Used by the CLI and the runtime.

Pipeline: parse (CAS1xx) → load imports (CAS308/CAS309) → structural checks in phases (CAS3xx) → typed
model (CAS2xx) → semantic checks (CAS4xx) → lower. A phase runs only when the ones before it found no
error, so one mistake does not cascade into many. Neither entry point raises: an internal bug becomes a
CAS999 diagnostic.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from cascadec import ast
from cascadec.checkpoints import with_identities
from cascadec.checks import BUILD_CHECKS, MODEL_CHECKS, PHASES, CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span
from cascadec.lower import lower
from cascadec.model import build
from cascadec.parser import parse
from cascadec.contract.plan import Plan


@dataclass(frozen=True)
class CompileResult:
    """``plan`` is None when any error was found; ``sources`` maps every file read to its text."""

    plan: Plan | None
    diagnostics: list[Diagnostic]
    sources: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.plan is not None and not any(d.severity == "error" for d in self.diagnostics)


def compile_file(path: str | Path, *, build_data: bool = False) -> CompileResult:
    """Compile the spec at ``path`` (imports resolve relative to its directory). ``build_data``: also build
    every generator with a few items (`BUILD_CHECKS`, seconds; `cascadec lint` and `run` do, an editor not)."""
    path = str(path)
    text = read_spec(path)
    if isinstance(text, Diagnostic):
        return CompileResult(None, [text], {})
    return compile_source(text, path, build_data=build_data)


def read_spec(path: str, at: Span | None = None) -> str | Diagnostic:
    """The text of the spec file at ``path``, or a CAS009 diagnostic saying why it cannot be read.

    ``at`` is where the file was named (an `import`); without it, a decoding error points into the file.
    """
    target = Path(path)
    if target.is_dir():
        return make("CAS009", f"`{path}` is a directory, not a spec file", at, label="a directory",
                    help="name a `.cascade` file")
    try:
        data = target.read_bytes()
    except OSError as exc:
        reason = ("does not exist" if isinstance(exc, FileNotFoundError) else
                  "is not readable (permission denied)" if isinstance(exc, PermissionError) else
                  f"cannot be read ({exc.strerror})")
        return make("CAS009", f"`{path}` {reason}", at, label="named here" if at else "",
                    help="check the path" + (" (relative to the importing file)" if at else ""))
    try:
        return data.decode("utf-8-sig")  # an editor's byte-order mark is not a token
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        # columns count characters, as in every other span; the bytes before the bad one on its line decode
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        bad = Span(path, line, column, line, column + 1, exc.start, exc.start + 1)
        return make("CAS009", f"`{path}` is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
                    f"column {column}", at or bad, label="imported here" if at else "not UTF-8",
                    help="save the file as UTF-8; binary files are not specs")


def compile_source(text: str, path: str = "<string>", *, build_data: bool = False) -> CompileResult:
    """Compile spec ``text`` as if read from ``path``; never raises. ``build_data``: see `compile_file`."""
    sources: dict[str, str] = {path: text}
    try:
        plan, diagnostics = _pipeline(text, path, sources, build_data)
    except Exception as exc:  # last resort: an internal bug must not surface as a traceback
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return CompileResult(None, [make(
            "CAS999", f"internal compiler error: {exc.__class__.__name__}: {exc}",
            notes=(f"raised at {Path(where.filename).name}:{where.lineno}",),
            help="this is a bug in cascadec; please report it with the spec that triggered it")], sources)
    return CompileResult(plan, sorted(diagnostics, key=Diagnostic.sort_key), sources)


def _has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def _pipeline(text: str, path: str, sources: dict[str, str],
              build_data: bool = False) -> tuple[Plan | None, list[Diagnostic]]:
    main, diagnostics = parse(text, path)
    if main is None:
        return None, diagnostics
    modules: list[ast.Module] = []
    diagnostics += _load_imports(main, sources, modules, [_key(path)], {_key(path)})
    if _has_errors(diagnostics):
        return None, diagnostics
    view = _view(path, main, modules)
    ctx = CheckContext(view)
    for phase in PHASES:
        for check in phase:
            diagnostics.extend(check(main, ctx))
        if _has_errors(diagnostics):
            return None, diagnostics
    spec, model_diagnostics, spans = build(view)
    diagnostics += model_diagnostics
    if spec is None:
        return None, diagnostics
    ctx.spec, ctx.spans = spec, spans
    for check in MODEL_CHECKS + (BUILD_CHECKS if build_data else ()):
        diagnostics.extend(check(main, ctx))
    if _has_errors(diagnostics):
        return None, diagnostics
    spec, problems = with_identities(spec, view)
    diagnostics += problems
    if _has_errors(diagnostics):
        return None, diagnostics
    return lower(spec, view, spans), diagnostics


def _key(path: str) -> str:
    return os.path.abspath(path) if not path.startswith("<") else path


def _load_imports(module: ast.Module, sources: dict[str, str], out: list[ast.Module], stack: list[str],
                  seen: set[str]) -> list[Diagnostic]:
    """Depth-first: each imported module is appended to ``out`` after its own imports (once each)."""
    diagnostics: list[Diagnostic] = []
    base = os.path.dirname(module.path) if not module.path.startswith("<") else ""
    for imp in module.imports:
        rel = imp.path.value
        target = os.path.normpath(os.path.join(base, rel))
        key = _key(target)
        if key in stack:
            chain = " -> ".join(os.path.basename(p) for p in stack[stack.index(key):] + [key])
            diagnostics.append(make("CAS308", f"import cycle: {chain}", imp.path.span, label="imported again here",
                                    help="move the shared items into a third file that both import"))
            continue
        if key in seen:
            continue
        if not rel.strip():
            diagnostics.append(make("CAS309", "`import` names no file", imp.path.span, label="empty path",
                                    help='write `import "common.cascade"` (relative to this file) or remove it'))
            continue
        if not os.path.exists(target):
            diagnostics.append(make("CAS309", f"imported file `{rel}` not found", imp.path.span,
                                    label=f"no file at `{target}`",
                                    help="import paths are relative to the directory of the importing file"))
            continue
        text = read_spec(target, imp.path.span)
        if isinstance(text, Diagnostic):
            diagnostics.append(text)
            continue
        seen.add(key)
        sources[target] = text
        child, parse_diagnostics = parse(text, target)
        diagnostics += parse_diagnostics
        if child is None:
            continue
        diagnostics += _load_imports(child, sources, out, stack + [key], seen)
        out.append(child)
    return diagnostics


def _view(path: str, main: ast.Module, imported: list[ast.Module]) -> ast.SpecView:
    items: list[object] = []
    for mod in imported:
        items.extend(mod.items)
    items.extend(main.items)
    cascade = main.cascades[0] if main.cascades else None
    if cascade is not None:
        items.extend(cascade.items)

    def pick(kind: type) -> tuple:
        return tuple(i for i in items if isinstance(i, kind))

    return ast.SpecView(path=path, main=main, modules=(*imported, main), cascade=cascade,
                        assigns=pick(ast.Assign), domains=pick(ast.Domain), defaults=pick(ast.Defaults),
                        resources=pick(ast.Resources), stages=pick(ast.Stage))
