"""CAS201 and CAS329 for token lengths no run can use: the one check of lengths against the base model's
positions, whatever their source.

- every model: each length the spec sets (`max_seq`, `max_prompt`, `max_response`, `max_prompt + max_response`,
  an eval's `max_tokens`; the defaults are caps sized for common models, and a short answer never reaches them)
  is at most 2^24 tokens (CAS201). transformers computes rotary angles as `float32(position) * inv_freq`, and a
  float32 holds every integer only up to 2^24 (24-bit significand), so later positions collapse onto each
  other; a sequence that long also needs far more KV-cache memory than any GPU has.
- a base model in a local directory with learned absolute position embeddings (GPT-2 and kin): each of those
  lengths is at most its `max_position_embeddings`, the rows of its position table (CAS201 at the length); a
  longer sequence indexes past it and the run fails. A rotary model is not held to that number: it runs past
  it, and fine-tuning at longer lengths is how its context is extended.
- a `tiny(...)` base model whose `max_position_embeddings` the spec sets: it must hold the longest row a stage
  or an eval of the plan may feed the model, defaults included (CAS329 at that key): the spec chose the
  number for this plan, and a learned table (gpt2) fails on the first longer row while rotary settings are
  made for it. A stage's row is `memory_plan.row_tokens`; an eval's is its `max_tokens` plus the prompt, cut
  to the `max_prompt` of a stage that has one (its engine cuts them); where no stage cuts prompts their
  length is not known before the data is read, and `max_tokens` alone is the bound. The key's name comes from
  the config class (gpt2's `n_positions`), so this part runs with lint's build checks only (`ctx.build`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.memory_plan import row_tokens
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


@dataclass(frozen=True)
class Positions:
    """The base model's positions: ``count`` of them, and ``key``, the `tiny(...)` keyword that sets them
    (None: the rows of a local directory's learned table)."""

    count: int
    key: str | None = None


def base_positions(ctx: CheckContext) -> Positions | None:
    """The positions the base model is held to: a local directory's learned table, or the count a `tiny(...)`
    model's spec sets (with lint's build checks only); None for other or unknown models."""
    assert ctx.spec is not None
    base = ctx.spec.base
    if base.kind == "tiny" and ctx.build:
        from cascadec.contract.tiny import positions_key  # imports transformers' config classes

        key = positions_key(base.name, base.config)
        count = base.config.get(key) if key else None
        # a count of the wrong type or sign is CAS329's of its own (`cascadec.checks.tiny_build`)
        valid = isinstance(count, int) and not isinstance(count, bool) and count > 0
        return Positions(count, key) if valid else None  # type: ignore[arg-type]
    rows = _table_rows(base)
    return Positions(rows) if rows is not None else None


def _table_rows(base: ModelRef) -> int | None:
    """The rows of the learned position table of a base model in a local directory; None for other or unknown
    models."""
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
    """CAS201 for a length past 2^24 or past a local model's learned table; CAS329 for a `tiny(...)` model's
    positions shorter than the plan's longest row."""
    assert ctx.spec is not None
    positions = base_positions(ctx)
    rows = positions.count if positions is not None and positions.key is None else None
    if positions is not None and positions.key is not None:
        yield from _tiny_positions(ctx, positions.key, positions.count)
    yield from _stage_lengths(ctx, rows)
    limit = rows or FLOAT32_EXACT  # every eval also runs on the base model
    for d in ctx.view.domains:
        for j, ev in enumerate(ctx.spec.domains[d.name.name].evals):
            at = ctx.spans.get(("domains", d.name.name, "evals", j, "max_tokens"))
            if at is not None and ev.max_tokens > limit:
                yield _too_long("`max_tokens`", ev.max_tokens, limit, rows, at[0])


def _tiny_positions(ctx: CheckContext, key: str, count: int) -> Iterator[Diagnostic]:
    longest, call = _longest_row(ctx), _tiny_call(ctx)
    if longest is None or count >= longest[0] or call is None:
        return
    needed, what = longest
    span = next((kw.span for kw in call.kwargs if kw.key.name == key), call.span)
    family = ctx.spec.base.name  # type: ignore[union-attr]
    yield make("CAS329", f"`tiny({family}, ...)`: `{key} = {count}` is shorter than the longest row the plan "
               f"allows, {needed} tokens ({what})", span, label="not a valid value",
               help=f"write `{key} = {needed}` or more, or lower that setting")


def _longest_row(ctx: CheckContext) -> tuple[int, str] | None:
    """The most tokens a stage's row or an eval's row may hold, with the settings that allow it."""
    assert ctx.spec is not None
    stages = ctx.spec.stages
    rows = [(row_tokens(st), f"stage `{st.name}`'s " + ("`max_seq`" if getattr(st.params, "max_seq", None) else
                                                       "`max_prompt` + `max_response`")) for st in stages]
    cut = max(stages, key=lambda st: getattr(st.params, "max_prompt", 0), default=None)
    prompt = getattr(cut.params, "max_prompt", 0) if cut is not None else 0
    for name, domain in ctx.spec.domains.items():
        for ev in domain.evals:
            what = f"eval `{name}.{ev.name}`'s `max_tokens`"
            rows.append((prompt + ev.max_tokens, f"{what} + stage `{cut.name}`'s `max_prompt`" if prompt else
                         f"{what}, before its prompt"))
    return max(rows, key=lambda r: r[0], default=None)


def _tiny_call(ctx: CheckContext) -> ast.Call | None:
    """The `tiny(...)` call inside `base = model(...)`."""
    value = next((a.value for a in ctx.view.assigns if a.key.name == "base"), None)
    inner = value.args[0] if isinstance(value, ast.Call) and value.args else None
    return inner if isinstance(inner, ast.Call) and inner.func.name == "tiny" else None
