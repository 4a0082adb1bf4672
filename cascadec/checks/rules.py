"""Checks of the real-run rules: a reward overlong rule on a distill stage (CAS413), a distill stage whose
every teacher is its own start (CAS420)."""

from __future__ import annotations

from collections.abc import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.params import DistillParams
from cascadec.diagnostics import Diagnostic


def check_distill_overlong(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS413: `overlong = penalty | soft(...)` set on (or inherited by) a distill stage's own keys."""
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        rule = getattr(st.params, "overlong", None)
        if st.params.kind == "distill" and rule in ("penalty", "soft"):
            yield make("CAS413", f"distill stage `{st.name}` sets `overlong = {rule}`, but distillation has no "
                       "reward to change", ctx.span_of(("stages", i, "params", "overlong"), node.name.span),
                       label="a reward rule", help="use `overlong = filter` to drop truncated rollouts from the "
                       "loss, or `none`")


def check_self_taught(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS420: every teacher a distill stage can resolve to (fixed teachers and `best(...)` candidates) is its
    parent, scored at the student's temperature (`DistillParams.self_taught`): the run keeps the parent."""
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        possible = st.teacher_stages()
        if isinstance(st.params, DistillParams) and possible and st.params.self_taught(st.parent, possible):
            span = ctx.span_of(("stages", i, "teachers", next(iter(st.teachers))), node.name.span)
            yield make("CAS420", f"every teacher of distill stage `{st.name}` is its own start `{st.parent}`",
                       span, label="the student's start",
                       help=f"name the checkpoints to learn from (e.g. `{_example(ctx, i, st.parent)}`), "
                       f"or drop the stage: the run keeps `{st.parent}` unchanged")


def _example(ctx: CheckContext, i: int, parent: str) -> str:
    """A `best(...)` teacher made of the spec's own names: the parent and the nearest stage declared before the
    student, by the first eval of the spec; capitals where the spec has no such name."""
    assert ctx.spec is not None
    other = next((s.name for s in reversed(ctx.spec.stages[:i]) if s.name != parent), "OTHER")
    by = next((f"{name}.{ev.name}" for name, d in ctx.spec.domains.items() for ev in d.evals), "DOMAIN.EVAL")
    return f"best({parent}, {other} by {by})"
