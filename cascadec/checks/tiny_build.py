"""CAS329: a `tiny(NAME, key = value, ...)` model whose config transformers would not build.

The rules are the runtime's (`cascadec.contract.tiny.tiny_problem`, which `runtime.models.check_tiny` runs
before it builds the model): a model type with a causal-LM class, keys its config class knows, positive sizes,
values of the right type, and the config class's own validators. They need transformers' config classes
(seconds to import), so only `cascadec lint` and `cascadec run` check them (`BUILD_CHECKS`), and specs without
`tiny(...)` never pay it.
"""

from __future__ import annotations

from collections.abc import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.structure import calls
from cascadec.codes import make
from cascadec.contract.tiny import TinyProblem, tiny_problem
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.convert import to_plain


def _tiny_calls(ctx: CheckContext) -> Iterator[ast.Call]:
    for mod in ctx.view.modules:
        for call in calls(mod):
            if call.func.name == "tiny" and len(call.args) == 1 and isinstance(call.args[0], (ast.Ident, ast.Str)):
                yield call


def _family(call: ast.Call) -> str:
    arg = call.args[0]
    return arg.name if isinstance(arg, ast.Ident) else arg.value  # type: ignore[union-attr]


_LABELS = {"key": "not a key of its config class", "value": "not a valid value", "config": "rejected by transformers"}


def _where(call: ast.Call, problem: TinyProblem) -> tuple[Span, str]:
    if problem.on == "type":
        return call.args[0].span, "not a causal-LM model type of transformers"
    for kw in call.kwargs:
        if kw.key.name == problem.key:
            return kw.span, _LABELS[problem.on]
    return call.span, "config rejected by transformers"


def check_tiny_configs(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS329 for every `tiny(...)` model source whose config the runtime would refuse."""
    for call in _tiny_calls(ctx):
        family = _family(call)
        problem = tiny_problem(family, {kw.key.name: to_plain(kw.value, kw.key.name) for kw in call.kwargs})
        if problem is None:
            continue
        span, label = _where(call, problem)
        yield make("CAS329", f"`tiny({family}, ...)`: {problem.message}", span, label=label, help=problem.hint)
