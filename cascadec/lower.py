"""Checked model → `cascadec.plan.Plan` (pure and total on a model that passed every check).

- stages in topological order (parents and teachers first; ties keep declaration order);
- domain weights normalised to sum 1;
- ``branch``: the stage is not on the main line (the final stage and its parent chain);
- ``hash`` (the training hash): `plan.content_hash` of what determines the stage's weights: its own fields
  (without origin/hashes/branch), the training side of its domains (data, reward, overlong policy, system
  prompt; not their evals), the base model, the chat template, its parent's and teachers' hashes, and the
  evals its decisions read (``best(... by d.e)`` picks a teacher and ``until`` stops the stage by an eval
  score, so those evals do shape the weights) — editing a stage changes its hash and every descendant's,
  as in a build system;
- ``eval_hash``: ``hash`` plus every domain's evals, reward and system prompt (evals score every domain
  after every stage), so an eval-only edit re-runs the evals of a finished stage instead of its training.
Data paths were made absolute by `cascadec.model` (relative to the file that names them).
"""

from __future__ import annotations

import os
from typing import Any

from cascadec import ast, plan
from cascadec.checks.graph import ancestors
from cascadec.diagnostics import Span
from cascadec.model import SpecIn, StageIn


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


def _hashable(data: Any, spec_dir: str) -> Any:
    """``data`` without origins and with absolute ``path`` values made relative to the spec's directory, so
    that a stage's hash does not change when the checkout moves (the plan itself keeps absolute paths)."""
    if isinstance(data, dict):
        # a local model (`ModelRef` of kind `path`) keeps its path in `name`
        path_keys = {"path", "name"} if data.get("kind") == "path" else {"path"}
        return {
            k: os.path.relpath(v, spec_dir) if k in path_keys and isinstance(v, str) and os.path.isabs(v)
            else _hashable(v, spec_dir)
            for k, v in data.items() if k != "origin"
        }
    if isinstance(data, list):
        return [_hashable(v, spec_dir) for v in data]
    return data


def _deps(st: StageIn) -> list[str]:
    out = [st.parent]
    for t in st.teachers.values():
        out.extend([t.stage] if t.kind == "stage" and t.stage else t.candidates)
    return [d for d in out if d and d != "base"]


def topological(stages: list[StageIn]) -> list[StageIn]:
    """Stable topological order: repeatedly take the first declared stage whose dependencies are done."""
    pending = list(stages)
    done: set[str] = set()
    order: list[StageIn] = []
    while pending:
        ready = next(st for st in pending if all(d in done for d in _deps(st)))
        pending.remove(ready)
        done.add(ready.name)
        order.append(ready)
    return order


def lower(spec: SpecIn, view: ast.SpecView, spans: dict[tuple[Any, ...], tuple[Span, str]]) -> plan.Plan:
    """Build the `Plan`; ``view`` supplies origins, ``spans`` the origin of each reward."""
    domains: dict[str, plan.Domain] = {}
    for d in view.domains:
        din = spec.domains[d.name.name]
        data = din.model_dump()
        reward_span = spans.get(("domains", d.name.name, "reward"))
        data["reward"]["origin"] = origin(reward_span[0]).model_dump() if reward_span else None
        data["origin"] = origin(d.span).model_dump()
        domains[d.name.name] = plan.Domain.model_validate(data)
    base = plan.ModelRef.model_validate(spec.base.model_dump())
    chat = plan.ChatTemplate.model_validate(spec.chat.model_dump())
    nodes = {st.name.name: st for st in view.stages}
    ordered = topological(spec.stages)
    main_line = {ordered[-1].name, *ancestors(ordered[-1].name, {s.name: s.parent for s in ordered})}
    spec_dir = os.path.dirname(os.path.abspath(view.path))
    every_eval = {k: _hashable(d.eval_inputs(), spec_dir) for k, d in sorted(domains.items())}
    hashes: dict[str, str] = {}
    stages: list[plan.Stage] = []
    for st in ordered:
        data = st.model_dump(exclude={"origin", "hash", "eval_hash", "branch"})
        total = sum(st.domains.values())
        data["domains"] = {k: v / total for k, v in st.domains.items()}
        reads = {f"{d}.{e}": domains[d].eval_inputs({e}) for d, e in sorted(st.read_evals())}
        payload = {
            "stage": data,
            "domains": {k: _hashable(domains[k].model_dump(mode="json", exclude={"evals"}), spec_dir)
                        for k in sorted(st.domains)},
            "reads": _hashable(reads, spec_dir),
            "base": _hashable(base.model_dump(mode="json"), spec_dir),
            "chat": chat.model_dump(mode="json"),
            "parent": hashes.get(st.parent),
            "teachers": {d: hashes.get(d) for d in sorted(_deps(st))},
        }
        digest = plan.content_hash(payload)
        hashes[st.name] = digest
        stages.append(plan.Stage.model_validate({
            **data, "hash": digest, "eval_hash": plan.content_hash({"hash": digest, "evals": every_eval}),
            "branch": st.name not in main_line, "origin": origin(nodes[st.name].span).model_dump(),
        }))
    return plan.Plan(name=spec.name, base=base, chat=chat, domains=domains, stages=stages, seed=spec.seed,
                     source=display_path(view.path))
