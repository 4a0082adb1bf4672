"""The compiler API: `.cascade` text → `Plan` plus diagnostics. Used by the CLI and the runtime.

Pipeline: parse (CAS1xx) → load imports (CAS308/CAS309) → structural checks in phases (CAS3xx) → typed
model (CAS2xx) → semantic checks (CAS4xx) → lower. After a name or graph error (CAS3xx) the typed model and
the semantic checks still run, so that one lint shows every independent mistake; their findings that overlap
an error already found are dropped, so one mistake does not cascade into many (`_independent`). Neither entry point raises: an internal bug becomes a
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
from cascadec.model import build, build_rest
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
    ctx = CheckContext(view, build=build_data)
    for phase in PHASES:
        for check in phase:
            diagnostics.extend(check(main, ctx))
        if _has_errors(diagnostics):
            if phase is PHASES[0]:
                return None, diagnostics  # no usable cascade block: nothing later can be checked
            return None, diagnostics + _independent(main, ctx, diagnostics, build_data)
    spec, model_diagnostics, spans = build(view)
    diagnostics += model_diagnostics
    if spec is None:
        return None, diagnostics + _independent(main, ctx, diagnostics, build_data, built=True)
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


def _independent(main: ast.Module, ctx: CheckContext, found: list[Diagnostic], build_data: bool, *,
                 built: bool = False) -> list[Diagnostic]:
    """The findings of the later steps (typed model, semantic and build checks) on a spec whose name or
    graph checks failed, or (``built``) whose typed model did not build, so that one lint shows every
    independent mistake rather than one step at a time. The checks then see the spec without its values
    that did not convert (`cascadec.model.build_rest`).

    Later checks assume the earlier steps passed, so on this spec a finding may be a consequence of an error
    already found: one inside a stage or domain that holds a found error is dropped (an error found outside
    them, e.g. in `resources`, covers its own place only), and so is everything a check that fails on the
    broken spec would have said.
    """
    model: list[Diagnostic] = []
    try:
        if not built:
            model = build(ctx.view)[1]
        spec, spans = build_rest(ctx.view)
    except Exception:  # the structure it assumes is broken: the errors found say where
        return []
    model = _outside(model, _blocks_of(_error_spans(found), ctx.view))
    taken = _blocks_of(_error_spans([*found, *model]), ctx.view)
    later: list[Diagnostic] = []
    if spec is not None:
        ctx.spec, ctx.spans = spec, spans
        for check in MODEL_CHECKS + (BUILD_CHECKS if build_data else ()):
            try:
                later += list(check(main, ctx))
            except Exception:
                continue
    return model + _outside(list(dict.fromkeys(later)), taken)


def _error_spans(diagnostics: list[Diagnostic]) -> list[Span]:
    return [d.span for d in diagnostics if d.severity == "error" and d.span is not None]


def _outside(diagnostics: list[Diagnostic], taken: list[Span]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.span is None or not any(_overlap(d.span, t) for t in taken)]


def _blocks_of(spans: list[Span], view: ast.SpecView) -> list[Span]:
    """Each span widened to the stage or domain block that holds it."""
    blocks = [item.span for item in (*view.stages, *view.domains)]
    return [next((b for b in blocks if _overlap(s, b)), s) for s in spans]


def _overlap(a: Span, b: Span) -> bool:
    return a.path == b.path and (a.line, a.column) < (b.end_line, b.end_column) \
        and (b.line, b.column) < (a.end_line, a.end_column)


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
