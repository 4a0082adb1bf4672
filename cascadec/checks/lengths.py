"""CAS201 for token lengths no run can use.

Two limits, for lengths the spec sets (`max_seq`, `max_prompt`, `max_response`, `max_prompt + max_response`,
an eval's `max_tokens`; the defaults are caps sized for common models, and a short answer never reaches them):

- every model: at most 2^24 tokens. transformers computes rotary angles as `float32(position) * inv_freq`,
  and a float32 holds every integer only up to 2^24 (24-bit significand), so later positions collapse onto
  each other; a sequence that long also needs far more KV-cache memory than any GPU has.
- a base model in a local directory with learned absolute position embeddings (GPT-2 and kin): at most its
  `max_position_embeddings`, the rows of its position table; a longer sequence indexes past it and the run
  fails. A rotary model is not held to that number: it runs past it, and fine-tuning at longer lengths is
  how its context is extended. (A `tiny(...)` model's positions are CAS329's, `cascadec.checks.tiny_build`.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.plan import ModelRef
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model import SpecIn
from cascadec.order import ancestors

FLOAT32_EXACT = 2**24
_LENGTHS = ("max_seq", "max_prompt", "max_response")
# transformers model types whose positions are a learned table of `max_position_embeddings` rows
# (`n_positions` in GPT-2's config); rotary, ALiBi and sinusoidal models have no such table
_LEARNED = {"gpt2", "gpt_neo", "gpt_bigcode", "opt", "biogpt"}


def _table_rows(base: ModelRef) -> int | None:
    """The rows of the learned position table of a base model in a local directory; None for other or unknown
    models. A `tiny(...)` model's `max_position_embeddings` is CAS329's (`cascadec.checks.tiny_build`)."""
    if base.kind != "path":
        return None
    try:
        config = json.loads((Path(base.name) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("model_type") not in _LEARNED:
        return None
    rows = config.get("n_positions", config.get("max_position_embeddings"))
    return rows if isinstance(rows, int) and rows > 0 else None


def _root(spec: SpecIn, stage: str) -> str:
    """Where the chain of parents of ``stage`` starts: `base` or a named checkpoint (whose model may differ).
    Model checks also run on a spec with name errors, where the chain may loop (then: a stage on the loop)."""
    chain = ancestors(stage, {st.name: st.parent for st in spec.stages})
    return chain[-1] if chain else stage


def _too_long(what: str, value: int, limit: int, rows: int | None, span: Span) -> Diagnostic:
    if limit == rows:
        why, label = f"the base model's {rows:,} learned positions", f"no position embedding past {rows:,}"
        help = f"lower it to at most {limit:,} (the model's `max_position_embeddings`)"
    else:
        why, label = f"{limit:,} (2^24) tokens", "positions past 2^24 are not distinct in float32"
        help = f"lower it to at most {limit:,}; no model is trained on sequences anywhere near this long"
    return make("CAS201", f"{what} = {value:,} is longer than {why}", span, label=label, help=help)


def _stage_lengths(ctx: CheckContext, rows: int | None) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for i, st in enumerate(ctx.spec.stages):
        limit = rows if rows is not None and _root(ctx.spec, st.name) == "base" else FLOAT32_EXACT
        given = {k: at[0] for k in _LENGTHS if (at := ctx.spans.get(("stages", i, "params", k)))}
        for key, span in given.items():
            if getattr(st.params, key) > limit:
                yield _too_long(f"`{key}`", getattr(st.params, key), limit, rows, span)
        prompt, response = getattr(st.params, "max_prompt", 0), getattr(st.params, "max_response", 0)
        if {"max_prompt", "max_response"} <= given.keys() and max(prompt, response) <= limit < prompt + response:
            yield _too_long(f"`max_prompt + max_response` = {prompt:,} + {response:,}", prompt + response, limit,
                            rows, given["max_response"])


def check_lengths(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    rows = _table_rows(ctx.spec.base)
    yield from _stage_lengths(ctx, rows)
    limit = rows or FLOAT32_EXACT  # every eval also runs on the base model
    for d in ctx.view.domains:
        for j, ev in enumerate(ctx.spec.domains[d.name.name].evals):
            at = ctx.spans.get(("domains", d.name.name, "evals", j, "max_tokens"))
            if at is not None and ev.max_tokens > limit:
                yield _too_long("`max_tokens`", ev.max_tokens, limit, rows, at[0])
