"""CAS329: a `tiny(NAME, key = value, ...)` model whose config transformers would not build.

The rules are the runtime's (`cascadec.contract.tiny.tiny_problem`, which `runtime.models.check_tiny` runs
before it builds the model): a model type with a causal-LM class, keys its config class knows, positive sizes,
values of the right type, and the config class's own validators. They need transformers' config classes
(seconds to import), so only `cascadec lint` and `cascadec run` check them (`BUILD_CHECKS`), and specs without
`tiny(...)` never pay it. With the default byte-level tokenizer, lint also builds the model and runs a first
forward (`cascadec.contract.tiny.build_problems`): what transformers accepts but cannot build or run, or builds
wrong (key-value heads that do not divide the heads, NaN logits, a model that is not causal). Every independent
problem of a call is reported (one a key); transformers' log lines are never printed: those about a key of the
spec become diagnostics at that key. Whether a `max_position_embeddings` the spec sets holds the plan's rows
is the lengths check's (`cascadec.checks.lengths`, with the other sources of a base model's positions).
"""

from __future__ import annotations

from collections.abc import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.tiny import BYTE_TOKENS, TinyProblem, build_problems, refusals, tiny_problems
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.convert import to_plain
from cascadec.units import UNITS


def _tiny_models(ctx: CheckContext) -> Iterator[tuple[ast.Call, str | None]]:
    """Each `tiny(...)` call of a `model(...)` source, with that source's `tokenizer` (None: the default)."""
    for call in ctx.view.calls:
        inner = call.args[0] if call.func.name == "model" and len(call.args) == 1 else None
        if isinstance(inner, ast.Call) and inner.func.name == "tiny" and len(inner.args) == 1 \
                and isinstance(inner.args[0], (ast.Ident, ast.Str)):
            tokenizer = next((kw.value for kw in call.kwargs if kw.key.name == "tokenizer"), None)
            yield inner, tokenizer.value if isinstance(tokenizer, ast.Str) else None


def _family(call: ast.Call) -> str:
    arg = call.args[0]
    return arg.name if isinstance(arg, ast.Ident) else arg.value  # type: ignore[union-attr]


_LABELS = {"key": "not a key of its config class", "value": "not a valid value", "ignored": "ignored by transformers",
           "warned": "transformers warns about it", "config": "rejected by transformers"}


def _where(call: ast.Call, problem: TinyProblem) -> tuple[Span, str]:
    if problem.on == "type":
        return call.args[0].span, "not a causal-LM model type of transformers"
    for kw in call.kwargs:
        if kw.key.name == problem.key:
            entries = kw.value.entries if isinstance(kw.value, ast.Record) else ()
            return next((e.span for e in entries if e.key.name == problem.entry), kw.span), _LABELS[problem.on]
    return call.span, "config rejected by transformers"


def check_tiny_configs(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS329 for every `tiny(...)` model source whose config the runtime would refuse."""
    for call, tokenizer in _tiny_models(ctx):
        quantities = [(kw.key.name, v) for kw in call.kwargs
                      if isinstance(v := kw.value, ast.Num) and v.unit in UNITS and UNITS[v.unit][0] != "count"]
        for key, num in quantities:  # `hidden_size = 32GB` would be 32e9: a config value is a count or a number
            yield make("CAS202", f"`{key}` of `tiny(...)` takes a plain number, found the "
                       f"{UNITS[num.unit][0]} quantity `{num.text}`", num.span, label="a unit here",
                       help="drop the unit (count units such as `k` and `Ki` are fine)")
        if quantities:
            continue
        family = _family(call)
        config = {kw.key.name: to_plain(kw.value, kw.key.name) for kw in call.kwargs}
        problems = tiny_problems(family, config)
        if not refusals(problems) and tokenizer in (None, "bytes"):
            problems += [p for p in build_problems(family, config, BYTE_TOKENS) if p not in problems]
        for problem in problems:
            span, label = _where(call, problem)
            yield make("CAS330" if problem.on == "warned" else "CAS329", f"`tiny({family}, ...)`: {problem.message}",
                       span, label=label, help=problem.hint)
