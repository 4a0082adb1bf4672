"""CAS321 for a reward's `field("col")` that rows of its domain's inline data do not have.

Inline rows are part of the spec, so their columns are checked on every compile; rows in files are read only
by `cascadec lint --check-rewards` (`runtime.rewards.contracts`). A column is what the runtime's reward reads
(`runtime.rewards.base.resolve`): the sample's `answer`, `prompt` or `id`, or a column the row keeps besides
them (`cascadec.contract.datarows.meta_of`). Training rows are checked where a stage that scores rollouts
trains on the domain; eval rows wherever the domain has a reward (it scores every eval). Rewards inside
`route(...)` are left to the routing check: each sees only the rows routed to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.datarows import meta_of
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.contract.suggest import did_you_mean
from cascadec.diagnostics import Diagnostic
from cascadec.model.inputs import DataIn

# what `field(...)` reads from the sample itself rather than from its row's other columns
_SAMPLE_COLUMNS = ("answer", "prompt", "id")


def _field_refs(value: Any) -> Iterator[ast.Call]:
    """Each `field("col")` that a reward call (or a part of a composite reward) takes as an argument."""
    if isinstance(value, ast.ListV):
        for item in value.items:
            yield from _field_refs(item)
    if not isinstance(value, ast.Call) or value.func.name == "route":
        return
    for arg in (*value.args, *(kw.value for kw in value.kwargs)):
        if isinstance(arg, ast.Call) and arg.func.name == "field":
            if len(arg.args) == 1 and isinstance(arg.args[0], ast.Str):
                yield arg
        else:
            yield from _field_refs(arg)


def _rewarded(ctx: CheckContext) -> set[str]:
    """Domains a stage that scores rollouts with rewards trains on."""
    assert ctx.spec is not None
    return {d for st in ctx.spec.stages if STAGE_KINDS[st.params.kind].rewarded for d in st.domains}


def _row_sets(ctx: CheckContext, name: str) -> Iterator[tuple[str, DataIn]]:
    assert ctx.spec is not None
    domain = ctx.spec.domains[name]
    if name in _rewarded(ctx):
        yield f"domain `{name}`'s training data", domain.train
    for ev in domain.evals:
        yield f"eval `{name}.{ev.name}`", ev.data


def _missing(ref: ast.Call, where: str, data: DataIn) -> Diagnostic | None:
    column: str = ref.args[0].value  # type: ignore[attr-defined]
    if column in _SAMPLE_COLUMNS:
        return None
    present = [set(meta_of(row, data.fields)) for row in data.rows]
    lacking = [i + 1 for i, cols in enumerate(present) if column not in cols]
    if not lacking:
        return None
    known = set(_SAMPLE_COLUMNS).union(*present)
    listed = ", ".join(map(str, lacking[:10])) + (", ..." if len(lacking) > 10 else "")
    message = f"no inline row of {where} has the column `{column}`" if len(lacking) == len(present) else \
        f"inline row{'s' if len(lacking) > 1 else ''} {listed} of {where} lack{'' if len(lacking) > 1 else 's'} " \
        f"the column `{column}`"
    return make("CAS321", f"{message}, which the reward reads", ref.span, label="read by the reward",
                notes=(f"the rows' columns: {', '.join(f'`{c}`' for c in sorted(known))}",),
                help=f"give every row a `{column}`" if column in known else did_you_mean(column, known, "columns"))


def check_reward_fields(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS321 for every `field("col")` of a domain's reward that an inline row it scores lacks."""
    assert ctx.spec is not None
    for name, node in ctx.domains().items():
        reward = next((a.value for a in node.assigns if a.key.name == "reward"), None)
        refs = list(_field_refs(reward))
        for where, data in _row_sets(ctx, name) if refs and name in ctx.spec.domains else ():
            if data.kind != "inline":
                continue
            for ref in refs:
                problem = _missing(ref, where, data)
                if problem is not None:
                    yield problem
