"""Checks of the real-run rules: a reward overlong rule on a distill stage (CAS413)."""

from __future__ import annotations

from collections.abc import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
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
