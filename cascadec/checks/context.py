"""What every check can see: the merged spec view and, for model checks, the validated model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cascadec import ast
from cascadec.diagnostics import Span
from cascadec.model import SpecIn


@dataclass
class CheckContext:
    view: ast.SpecView
    spec: SpecIn | None = None
    # value location in the input model → (span, user's key); filled by `cascadec.model.build`
    spans: dict[tuple[Any, ...], tuple[Span, str]] = field(default_factory=dict)
    # whether lint's build checks run (`compile_file(build_data=True)`): model checks that need transformers'
    # config classes (seconds to import) look only then
    build: bool = False

    def stage_index(self) -> dict[str, int]:
        """First declaration index of each stage name."""
        out: dict[str, int] = {}
        for i, st in enumerate(self.view.stages):
            out.setdefault(st.name.name, i)
        return out

    def domains(self) -> dict[str, ast.Domain]:
        out: dict[str, ast.Domain] = {}
        for d in self.view.domains:
            out.setdefault(d.name.name, d)
        return out

    def span_of(self, loc: tuple[Any, ...], fallback: Span) -> Span:
        hit = self.spans.get(loc)
        return hit[0] if hit else fallback
