"""Checks on the validated model: zero-step stages (CAS401), degenerate GRPO groups (CAS402), batch
algebra (CAS400), thinking-mode prefixes (CAS403), stop rules that are never evaluated (CAS404) and
sampled evals at temperature 0 (CAS405), stop rules that can never hold or hold at once (CAS406), greedy
GRPO rollouts (CAS407) and warm-ups longer than the stage (CAS408)."""

from __future__ import annotations

import math

from collections.abc import Mapping
from typing import Iterator

from cascadec import ast
from cascadec.checks.batch_rows import most_rows_per_step
from cascadec.checks.context import CheckContext
from cascadec.checks.plausible import MAX_GROUP, MAX_SEQUENCES
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span
from cascadec.contract.params import GRPOParams
from cascadec.model import DomainIn, StageIn


def _stages(ctx: CheckContext) -> Iterator[tuple[int, StageIn, Span]]:
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        yield i, st, node.name.span


_HOLDS_AT_ZERO = {">=": lambda v: 0 >= v, ">": lambda v: 0 > v, "<=": lambda v: 0 <= v, "<": lambda v: 0 < v}


def check_steps(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    for i, st, name_span in _stages(ctx):
        for j, cond in enumerate(st.until):
            if cond.kind == "steps" and _HOLDS_AT_ZERO[cond.op](cond.value):
                yield make("CAS401", f"stop rule `steps {cond.op} {cond.value:g}` holds before the first step",
                           ctx.span_of(("stages", i, "until", j), name_span), label="stops the stage at once",
                           help="a step cap is written `steps >= N` with N >= 1")
        if st.params.steps is None and st.params.epochs is None:
            yield make("CAS203", f"stage `{st.name}` needs `steps` or `epochs`", name_span, label="how long to train",
                       help="set `steps = N` or `epochs = E` in the stage or in its `defaults` block")
        if st.params.steps == 0:
            yield make("CAS401", f"stage `{st.name}` has `steps = 0` and can never run",
                       ctx.span_of(("stages", i, "params", "steps"), name_span), label="zero steps",
                       secondary=((name_span, "this stage"),),
                       help="give the stage at least one step, or remove it and start its children from its parent")


def check_groups(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    for i, st, name_span in _stages(ctx):
        if isinstance(st.params, GRPOParams) and st.params.rollouts_per_prompt < 2:
            yield make("CAS402", f"GRPO stage `{st.name}` samples {st.params.rollouts_per_prompt} rollout per prompt",
                       ctx.span_of(("stages", i, "params", "rollouts_per_prompt"), name_span),
                       label="a group of one has zero advantage",
                       help="use `rollouts_per_prompt` of at least 2 (the papers use 8 or 16)")


def _micro_options(per_rank: int) -> list[int]:
    return [m for m in range(1, min(per_rank, 64) + 1) if per_rank % m == 0]


def _nearest(value: int, period: int, most: int) -> list[int]:
    """The multiples of ``period`` from 1 to ``most`` nearest to ``value``: the largest at most ``value`` (or
    ``most``), and the next above ``value``."""
    return [m for m in (min(value, most) // period * period, (value // period + 1) * period) if 1 <= m <= most]


def _batch_help(st: StageIn, domains: Mapping[str, DomainIn]) -> str:
    """Values that split, each of which passes lint: micro-batches that divide a rank's share; row counts (or,
    when none fits the training rows, group sizes) no larger than the training rows (CAS421) or the
    sequences per step (CAS415) allow. Computed, not searched: `micro_batch = 1e15` must not take 1e15
    iterations."""
    p = st.params
    dp, unit, total, key = st.data_parallel_size, st.micro_batch_unit, p.sequences_per_step, p.batch_key
    hints = []
    if total % dp == 0:
        hints.append("`micro_batch` = " + ", ".join(map(str, _micro_options(total // dp))))
    rows_cap = min(most_rows_per_step(st, domains) or MAX_SEQUENCES, MAX_SEQUENCES // p.group_size)
    rows = _nearest(p.rows_per_step, unit // math.gcd(p.group_size, unit), rows_cap)
    if rows:
        hints.append(f"`{key}` = " + " or ".join(map(str, rows)))
    elif p.group_size > 1 and p.rows_per_step <= rows_cap:
        groups = _nearest(p.group_size, unit // math.gcd(p.rows_per_step, unit), min(MAX_GROUP, MAX_SEQUENCES))
        groups = [g for g in groups if g >= 2]
        if groups:
            hints.append("`rollouts_per_prompt` = " + " or ".join(map(str, groups)))
    if not hints:
        return f"use fewer GPUs or a `micro_batch` whose product with them divides {total}"
    return "valid alternatives: " + "; ".join(hints)


def check_batch(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Each optimizer step's sequences must split into whole micro-batches on every data-parallel rank."""
    for i, st, name_span in _stages(ctx):
        p = st.params
        dp, unit, total, key = st.data_parallel_size, st.micro_batch_unit, p.sequences_per_step, p.batch_key
        if total % unit == 0:
            continue
        what = (f"`{key} = {total}`" if p.group_size == 1 else
                f"`{key} × rollouts_per_prompt` = {p.rows_per_step} × {p.group_size} = {total}")
        notes = [f"data-parallel size = nodes × gpus = {st.resources.nnodes} × {st.resources.nproc_per_node} = {dp}"]
        if p.micro_batch > total // dp:
            notes.append(f"`micro_batch = {p.micro_batch}` is more than the {total // dp} sequence(s) each rank "
                         "has in a step")
        yield make("CAS400", f"{what} does not split over {dp} data-parallel rank(s) × `micro_batch = "
                   f"{p.micro_batch}`", ctx.span_of(("stages", i, "params", key), name_span),
                   label=f"{total} is not divisible by {unit}",
                   secondary=tuple((s, "micro-batch set here") for s in
                                   [ctx.span_of(("stages", i, "params", "micro_batch"), name_span)] if s != name_span),
                   notes=tuple(notes), help=_batch_help(st, ctx.spec.domains if ctx.spec else {}))


def check_modes(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    chat = ctx.spec.chat
    for i, st, name_span in _stages(ctx):
        prefix = {"thinking": chat.thinking, "no_thinking": chat.no_thinking}.get(st.mode)
        if prefix == "":
            yield make("CAS403", f"stage `{st.name}` uses `mode = {st.mode}` but the template's `{st.mode}` "
                       "prefix is empty", ctx.span_of(("stages", i, "mode"), name_span), label="no effect",
                       help=f"set `chat = template({st.mode} = \"...\")` or drop `mode`")


def check_until_evals(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    for i, st, name_span in _stages(ctx):
        if st.eval_every == 0 and any(c.kind in ("threshold", "plateau") for c in st.until):
            yield make("CAS404", f"stage `{st.name}` stops on an eval but never evaluates before its end",
                       ctx.span_of(("stages", i, "until", 0), name_span), label="checked only after the last step",
                       help="set `eval_every = N` in the stage so the rule can stop it early")


def check_eval_sampling(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for d in ctx.view.domains:
        for j, ev in enumerate(ctx.spec.domains[d.name.name].evals):
            if ev.k > 1 and ev.temperature == 0:
                loc = ("domains", d.name.name, "evals", j)
                yield make("CAS405", f"eval `{d.name.name}.{ev.name}` samples {ev.k} completions at temperature 0",
                           ctx.span_of(loc + ("metric",), ctx.span_of(loc, d.name.span)),
                           label="greedy decoding gives identical samples",
                           help=f"set `temperature = 0.6` (or higher) in eval `{ev.name}`, or use `metric = pass@1`")


# reward kinds whose value lies in [0, 1] (docs/rewards.md); `code_switch_penalty` can lower the floor
_UNIT_REWARDS = frozenset({"math_verify", "gym", "exact", "choice", "instructions", "unit_tests", "json_schema"})
_NEVER = {">=": lambda v, lo, hi: v > hi, ">": lambda v, lo, hi: v >= hi,
          "<=": lambda v, lo, hi: v < lo, "<": lambda v, lo, hi: v <= lo}
_ALWAYS = {">=": lambda v, lo, hi: v <= lo, ">": lambda v, lo, hi: v < lo,
           "<=": lambda v, lo, hi: v >= hi, "<": lambda v, lo, hi: v > hi}


def _score_range(domain: DomainIn, eval_name: str) -> tuple[float, float] | None:
    """Bounds of an eval's score, or None when the reward is not bounded (a reward model, a judge, `py`)."""
    ev = next((e for e in domain.evals if e.name == eval_name), None)
    if ev is not None and ev.metric == "pass@k":
        return 0.0, 1.0  # a probability (Chen et al. 2021), whatever the reward's scale
    if domain.reward is None or domain.reward.kind not in _UNIT_REWARDS:
        return None
    penalty = domain.reward.code_switch_penalty
    return min(0.0, penalty) if penalty is not None else 0.0, 1.0


def check_until_ranges(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for i, st, name_span in _stages(ctx):
        for j, cond in enumerate(st.until):
            if cond.kind != "threshold":
                continue
            loc = ("stages", i, "until", j)
            span = ctx.span_of(loc + ("value",), ctx.span_of(loc, name_span))
            if cond.relative_to is not None:
                if cond.value <= 0:
                    yield make("CAS406", f"stop rule scales the teacher's score by {cond.value:g}", span,
                               label="factor must be > 0", help="write e.g. `math.gsm >= 0.95 * teacher(math).gsm`")
                continue
            bounds = _score_range(ctx.spec.domains[cond.domain], cond.eval)
            if bounds is None:
                continue
            lo, hi = bounds
            rule = f"`{cond.domain}.{cond.eval} {cond.op} {cond.value:g}`"
            if _NEVER[cond.op](cond.value, lo, hi):
                yield make("CAS406", f"stop rule {rule} can never hold", span,
                           label=f"scores lie in [{lo:g}, {hi:g}]",
                           help="scores are fractions: write e.g. `>= 0.8` for 80%")
            elif _ALWAYS[cond.op](cond.value, lo, hi):
                yield make("CAS406", f"stop rule {rule} holds for every score", span,
                           label=f"scores lie in [{lo:g}, {hi:g}]",
                           help="the stage would stop at its first eval; pick a threshold inside the range")


def check_greedy_rollouts(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    for i, st, name_span in _stages(ctx):
        if isinstance(st.params, GRPOParams) and st.params.temperature == 0:
            yield make("CAS407", f"GRPO stage `{st.name}` samples its rollouts greedily (`temperature = 0`)",
                       ctx.span_of(("stages", i, "params", "temperature"), name_span),
                       label="identical rollouts, zero advantages",
                       help="sample at `temperature = 1.0` (both papers); greedy decoding belongs in `pass@1` evals")


def check_warmup(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    for i, st, name_span in _stages(ctx):
        warmup, steps = st.params.optim.lr.warmup, st.params.steps
        if steps and warmup >= steps:
            yield make("CAS408", f"stage `{st.name}` warms up for {warmup} steps but runs {steps}",
                       ctx.span_of(("stages", i, "params", "optim", "lr", "warmup"), name_span),
                       label="never reaches the peak learning rate",
                       help=f"use `warmup` below {steps} (a few percent of the steps is usual)")
