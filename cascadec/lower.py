"""Checked model → `cascadec.contract.plan.Plan` (pure and total on a model that passed every check).

- stages in topological order (parents and teachers first; ties keep declaration order);
- domain weights normalised to sum 1;
- ``branch``: the stage is not on the main line (the final stage and its parent chain);
- hashes: `cascadec.contract.hashing.hash_plan` (what each hash covers is documented there), with absolute
  paths hashed relative to the spec's directory.
Data paths were made absolute by `cascadec.model` (relative to the file that names them).
"""

from __future__ import annotations

import os
from typing import Any

from cascadec import ast
from cascadec.contract import plan
from cascadec.contract.hashing import hash_plan
from cascadec.diagnostics import Span
from cascadec.model import SpecIn
from cascadec.order import ancestors, topological


def display_path(path: str) -> str:
    """``path`` as recorded in the plan: an absolute path becomes relative to the working directory, so that
    `plan.json` and the scripts' headers do not carry the build machine's directory layout (ARCHITECTURE.md
    rule 4). Pseudo-paths such as ``<string>`` and relative paths are kept as written."""
    if not os.path.isabs(path):
        return path
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows: no relative form exists
        return os.path.basename(path)


def origin(span: Span) -> plan.Origin:
    return plan.Origin(path=display_path(span.path), line=span.line, column=span.column, end_line=span.end_line,
                       end_column=span.end_column)


def lower(spec: SpecIn, view: ast.SpecView, spans: dict[tuple[Any, ...], tuple[Span, str]]) -> plan.Plan:
    """Build the hashed `Plan`; ``view`` supplies origins, ``spans`` the origin of each reward."""
    domains: dict[str, plan.Domain] = {}
    for d in view.domains:
        data = spec.domains[d.name.name].model_dump()
        reward_span = spans.get(("domains", d.name.name, "reward"))
        if data["reward"] is not None:
            data["reward"]["origin"] = origin(reward_span[0]).model_dump() if reward_span else None
        data["origin"] = origin(d.span).model_dump()
        domains[d.name.name] = plan.Domain.model_validate(data)
    nodes = {st.name.name: st for st in view.stages}
    ordered = topological(spec.stages, set(spec.checkpoints))
    main_line = {ordered[-1].name, *ancestors(ordered[-1].name, {s.name: s.parent for s in ordered})}
    stages: list[plan.Stage] = []
    for st in ordered:
        data = st.model_dump(exclude={"origin", "hash", "eval_hash", "branch"})
        total = sum(st.domains.values())
        data["domains"] = {k: v / total for k, v in st.domains.items()}
        stages.append(plan.Stage.model_validate({
            **data, "branch": st.name not in main_line, "origin": origin(nodes[st.name].span).model_dump(),
        }))
    checkpoints = {n: plan.ModelRef.model_validate(r.model_dump()) for n, r in spec.checkpoints.items()}
    built = plan.Plan(name=spec.name, base=plan.ModelRef.model_validate(spec.base.model_dump()),
                      chat=plan.ChatTemplate.model_validate(spec.chat.model_dump()), domains=domains,
                      stages=stages, checkpoints=checkpoints, seed=spec.seed, source=display_path(view.path),
                      tracking=spec.tracking)
    return hash_plan(built, root=os.path.dirname(os.path.abspath(view.path)))
