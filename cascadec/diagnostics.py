"""Diagnostics: one `Span` convention and one `Diagnostic` type for every compiler stage.

Spans follow Lark's `Token`/`Meta` convention: 1-based line and column, exclusive end, plus 0-based
character offsets. Stages return diagnostics; they never raise on user errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Span:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Label:
    span: Span
    text: str = ""
    primary: bool = True


@dataclass(frozen=True)
class Diagnostic:
    code: str
    name: str
    severity: Severity
    message: str
    labels: tuple[Label, ...] = ()
    notes: tuple[str, ...] = ()
    help: str | None = None

    @property
    def span(self) -> Span | None:
        for label in self.labels:
            if label.primary:
                return label.span
        return self.labels[0].span if self.labels else None

    def sort_key(self) -> tuple[str, int, int, str]:
        s = self.span
        return (s.path, s.line, s.column, self.code) if s else ("", 0, 0, self.code)
