"""The stage graph of a `Plan` as Mermaid or Graphviz DOT text (pure functions, deterministic).

Nodes are the base model and the stages; a solid edge runs from a stage's parent checkpoint to the
stage, a dashed edge from each teacher to the distill stage it teaches (labelled with the domain it is
routed to, or the ``best(...)`` rule that picks it). Side branches (`Stage.branch`) are drawn dashed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cascadec.contract.plan import Plan, Stage

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _weights(stage: Stage) -> str:
    if len(stage.domains) == 1:
        return next(iter(stage.domains))
    return ", ".join(f"{d} {w:.3g}" for d, w in stage.domains.items())


def _teacher_edges(stage: Stage) -> Iterator[tuple[str, str]]:
    """(teacher node name, edge label) for every teacher route of ``stage``, sorted by route."""
    for route, ref in sorted(stage.teachers.items()):
        if ref.kind == "stage" and ref.stage:
            yield ref.stage, f"teacher: {route}"
        else:
            rule = f"best by {ref.domain}.{ref.eval}"
            for candidate in ref.candidates:
                yield candidate, f"teacher: {route} ({rule})"


def _stage_label(stage: Stage) -> list[str]:
    return [stage.name, f"{stage.kind} · {_weights(stage)} · {stage.params.steps_label()} steps"]


# ---------------------------------------------------------------- mermaid


def _mermaid_id(name: str, index: dict[str, int]) -> str:
    # A prefix keeps names such as `end` or `graph` from clashing with Mermaid keywords.
    return f"st_{name}" if _IDENT.fullmatch(name) else f"st_{index[name]}"


def _mermaid_text(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(plan: Plan) -> str:
    """A Mermaid ``flowchart TD`` of the cascade, ending with a newline.

    >>> from cascadec.contract.plan import ModelRef
    >>> print(to_mermaid(Plan(name="x", base=ModelRef(kind="hub", name="m"), domains={}, stages=[])), end="")
    flowchart TD
      st_base(["base: m"])
    """
    index = {"base": 0, **{s.name: i + 1 for i, s in enumerate(plan.stages)}}
    ident = {name: _mermaid_id(name, index) for name in index}
    lines = ["flowchart TD", f'  {ident["base"]}(["{_mermaid_text(f"base: {plan.base.name}")}"])']
    for stage in plan.stages:
        label = "<br/>".join(_mermaid_text(part) for part in _stage_label(stage))
        lines.append(f'  {ident[stage.name]}["{label}"]')
    for stage in plan.stages:
        if stage.parent in ident:
            lines.append(f"  {ident[stage.parent]} --> {ident[stage.name]}")
        for teacher, text in _teacher_edges(stage):
            if teacher in ident:
                lines.append(f'  {ident[teacher]} -.->|"{_mermaid_text(text)}"| {ident[stage.name]}')
    branches = [ident[s.name] for s in plan.stages if s.branch]
    if branches:
        lines.append("  classDef branch stroke-dasharray: 5 5")
        lines.append(f"  class {','.join(branches)} branch")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- dot


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(plan: Plan) -> str:
    """A Graphviz ``digraph`` of the cascade, ending with a newline.

    >>> from cascadec.contract.plan import ModelRef
    >>> print(to_dot(Plan(name="x", base=ModelRef(kind="hub", name="m"), domains={}, stages=[])), end="")
    digraph "x" {
      rankdir=TB;
      node [shape=box];
      "base" [label="base\\nm", shape=ellipse];
    }
    """
    lines = [
        f"digraph {_dot_string(plan.name)} {{",
        "  rankdir=TB;",
        "  node [shape=box];",
        f'  "base" [label={_dot_string("base" + chr(10) + plan.base.name)}, shape=ellipse];',
    ]
    for stage in plan.stages:
        style = ", style=dashed" if stage.branch else ""
        lines.append(f"  {_dot_string(stage.name)} [label={_dot_string(chr(10).join(_stage_label(stage)))}{style}];")
    known = {"base", *(s.name for s in plan.stages)}
    for stage in plan.stages:
        if stage.parent in known:
            lines.append(f"  {_dot_string(stage.parent)} -> {_dot_string(stage.name)};")
        for teacher, text in _teacher_edges(stage):
            if teacher in known:
                lines.append(
                    f"  {_dot_string(teacher)} -> {_dot_string(stage.name)} [style=dashed, label={_dot_string(text)}];"
                )
    lines.append("}")
    return "\n".join(lines) + "\n"


#: ``--format`` name -> renderer.
GRAPH_FORMATS = {"mermaid": to_mermaid, "dot": to_dot}
