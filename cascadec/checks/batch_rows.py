"""How many rows a step may draw from its domains' training sets (CAS421; also the bound of the batch check's
hints, CAS400).

A step draws ``rows_per_step`` rows from its mixture: each domain ``d`` of weight ``w`` gets at least
``floor(w × rows_per_step)`` of them (``runtime.data.MixtureSampler.counts``), drawn without replacement from a
per-epoch permutation that wraps around inside the step. When the training set is smaller than that, one step
holds the same row twice or more: a GRPO group split in two, an SFT row counted twice. The row count is known at
lint for `inline(...)` rows and a `gym(...)` source with `size`; decontamination and length filters only remove
rows, so it is an upper bound and the check never fires on a step that fits. Only a batch the spec writes (in the
stage or its `defaults`) is checked: inline rows are for small tests, which leave the batch at its default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.model import DataIn, DomainIn, StageIn


def known_rows(data: DataIn) -> int | None:
    """The most training rows ``data`` can give, or None when only the run can count them."""
    if data.kind == "inline":
        return len(data.rows)
    if data.kind == "gym":
        return data.size
    return None


def _floor_share(weights: Mapping[str, float], d: str, rows: int) -> int:
    """The rows domain ``d`` surely gets in a step of ``rows`` (the runtime's own float arithmetic)."""
    return int(weights[d] / sum(weights.values()) * rows)


def most_rows_per_step(st: StageIn, domains: Mapping[str, DomainIn]) -> int | None:
    """The largest ``rows_per_step`` that draws no row of a known-size domain twice, or None when no domain of
    the stage has a size known at lint."""
    limits = []
    for d in st.domains:
        n = known_rows(domains[d].train)
        if n is None:
            continue
        share = st.domains[d] / sum(st.domains.values())
        rows = int((n + 1) / share)  # floor(share × rows) <= n; corrected for rounding below
        while rows > 0 and _floor_share(st.domains, d, rows) > n:
            rows -= 1
        while _floor_share(st.domains, d, rows + 1) <= n:
            rows += 1
        limits.append(rows)
    return min(limits) if limits else None


def check_rows_per_step(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS421 for a stage whose every step draws more rows of a domain than its training set has."""
    assert ctx.spec is not None
    for i, st in enumerate(ctx.spec.stages):
        p = st.params
        written = ctx.spans.get(("stages", i, "params", p.batch_key))
        if written is None:
            continue  # a default batch: inline rows are for small tests, which leave the batch as it is
        for d in st.domains:
            n = known_rows(ctx.spec.domains[d].train)
            drawn = _floor_share(st.domains, d, p.rows_per_step)
            if n is None or drawn <= n:
                continue
            most = most_rows_per_step(st, ctx.spec.domains)
            share = "" if len(st.domains) == 1 else f" (weight {st.domains[d]:g} of {sum(st.domains.values()):g})"
            yield make("CAS421", f"each step of stage `{st.name}` draws {drawn:,} rows of domain `{d}`{share}, "
                       f"which has {n:,} training row{'s' if n != 1 else ''}",
                       written[0],
                       label="the same rows again in one step",
                       help=f"set `{p.batch_key} = {most}` or less, or give domain `{d}` more training rows"
                       if most else f"give domain `{d}` training rows")
