"""Checks of the RL and distillation options whose effect depends on other keys (CAS411, CAS412).

A key the stage's other settings make inert is an error (CAS411), never silently accepted: dynamic-sampling
keys without `dynamic_filter = on`, KL keys without `kl > 0`, `is_band` without an IS correction (or a low
edge with `tis`, which only truncates above), `micro_batch` next to `max_tokens_per_gpu`, and clipping with one update per rollout
batch (the ratio pi_theta / pi_old is then exactly 1, so a clip never acts), and a domain's `decontaminate`
without evals.
A distill stage that samples at a temperature other than 1 and does not set `teacher_temperature` gets a
warning (CAS412): its teachers are scored at 1, their own distribution, not at the student's temperature. A
greedy stage (`temperature = 0`) does not: a teacher temperature has no sampling distribution to match there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.params import DistillParams, GRPOParams
from cascadec.diagnostics import Diagnostic, Span


def _set(ctx: CheckContext, i: int, key: str) -> bool:
    return ("stages", i, "params", key) in ctx.spans


def _inert(p: GRPOParams, ctx: CheckContext, i: int) -> Iterator[tuple[str, str, str]]:
    """``(key, why, help)`` for each key set on stage ``i`` that has no effect."""
    if not p.dynamic_filter:
        for key in ("sampling_budget", "on_no_signal"):
            if _set(ctx, i, key):
                yield key, "dynamic sampling is off", "add `dynamic_filter = on`, or remove the key"
    if p.kl == 0:
        for key in ("kl_estimator", "kl_in"):
            if _set(ctx, i, key):
                yield key, "the stage has no KL term (`kl = 0`)", "set `kl` above 0, or remove the key"
    if _set(ctx, i, "is_band") and p.is_correction == "none":
        yield "is_band", "no IS correction is on", "add `is_correction = icepop` (the band) or `tis` (its upper edge)"
    if p.is_correction == "tis" and _set(ctx, i, "is_band") and p.is_band[0] != 0.5:
        yield "is_band", "`tis` truncates the weight above the upper edge only", "leave the lower edge at 0.5"
    if p.max_tokens_per_gpu is not None and _set(ctx, i, "micro_batch"):
        yield "micro_batch", "`max_tokens_per_gpu` packs micro-batches by tokens", "remove `micro_batch`"
    if p.updates_per_step == 1:
        for key in ("clip", "dual_clip"):
            if _set(ctx, i, key):
                yield key, ("with one update per rollout batch the ratio pi_theta / pi_old is exactly 1"),\
                    "set `updates_per_step` above 1 (DAPO: 16), or remove the key"


def _retention(st: Any, ctx: CheckContext, i: int, span: Span) -> Iterator[Diagnostic]:
    rule = st.keep
    if rule is None:
        return
    where = ctx.span_of(("stages", i, "keep"), span)
    if rule.domain and st.eval_every == 0:
        yield make("CAS411", f"`keep = best(...)` has no effect in stage `{st.name}`: it never evaluates before "
                   "its end (`eval_every = 0`)", where, label="no scores to compare",
                   help="set `eval_every`: a snapshot is kept at every eval point and save point")
    elif st.eval_every == 0 and st.save_every == 0:
        yield make("CAS411", f"`keep` has no effect in stage `{st.name}`: it never saves a snapshot "
                   "(`save_every = 0`, `eval_every = 0`)", where, label="no snapshots",
                   help="set `save_every`: a snapshot is written at every save point and eval point")
    elif rule.last == 0 and not rule.domain:
        yield make("CAS411", f"`keep = 0` has no effect in stage `{st.name}`", where, label="keeps nothing",
                   help="keep at least one snapshot, or remove the key (only `final/` is kept)")


def _decontaminate(ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for name, d in ctx.spec.domains.items():
        if d.decontaminate and not d.evals:
            where = ctx.span_of(("domains", name, "decontaminate"), ctx.spans[("domains", name)][0])
            yield make("CAS411", f"`decontaminate` has no effect in domain `{name}`: it has no evals to drop "
                       "training rows against", where, label="no evals",
                       help=f"add an `eval NAME = ...` to domain `{name}`, or remove the key")


def check_options(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    yield from _decontaminate(ctx)
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        span: Span = node.name.span
        p: Any = st.params
        if isinstance(p, GRPOParams):
            for key, why, hint in _inert(p, ctx, i):
                yield make("CAS411", f"`{key}` has no effect in stage `{st.name}`: {why}",
                           ctx.span_of(("stages", i, "params", key), span), label="no effect", help=hint)
        yield from _retention(st, ctx, i, span)
        if isinstance(p, DistillParams) and p.temperature not in (0.0, 1.0) and not _set(ctx, i, "teacher_temperature"):
            yield make("CAS412", f"distill stage `{st.name}` samples at `temperature = {p.temperature:g}` and scores "
                       "its teachers at 1.0", ctx.span_of(("stages", i, "params", "temperature"), span),
                       label="student temperature",
                       help="state it: `teacher_temperature = 1.0` (the teachers' own distribution, as MOPD and "
                       f"reverse-KL distillation assume) or `teacher_temperature = {p.temperature:g}`")
