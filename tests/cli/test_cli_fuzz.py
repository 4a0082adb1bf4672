"""Property tests: whatever the spec text, `lint` exits 0 or 1 with well-formed output in every format,
and the renderers accept any span, even one that lies outside its file."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascadec.diagnostics import Diagnostic, Label, Span
from cascadec.report_diagnostics import RENDERERS

MINI = (Path(__file__).parent / "specs" / "mini.cascade").read_text()
SNIPPETS = ["{", "}", "(", ")", "=", '"', "\n", "stage", "domain", "->", ",", ":", "1e", "k", "#", "\\", "é", "\t"]


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    text = MINI
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
    return text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated_specs(), fmt=st.sampled_from(sorted(RENDERERS)))
def test_lint_of_mutated_specs_never_fails_internally(tmp_path: Path, text: str, fmt: str) -> None:
    spec = tmp_path / "m.cascade"
    spec.write_text(text, encoding="utf-8")
    result = invoke(["lint", "--format", fmt, str(spec)])
    assert result.exit_code in (0, 1), result.stderr
    assert "internal error" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    if fmt in ("json", "sarif"):
        json.loads(result.stdout)


spans = st.builds(
    lambda line, col, dl, dc: Span("f.cascade", line, col, line + dl, col + dc if dl == 0 else dc + 1),
    st.integers(1, 12),
    st.integers(1, 80),
    st.integers(0, 2),
    st.integers(0, 20),
)


@settings(max_examples=60, deadline=None)
@given(
    source=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200),
    primary=spans,
    secondary=st.lists(spans, max_size=3),
)
def test_renderers_accept_any_span(source: str, primary: Span, secondary: list[Span]) -> None:
    labels = (Label(primary, "here"), *(Label(s, "there", primary=False) for s in secondary))
    diag = Diagnostic("CAS300", "unknown-name", "error", "m", labels, notes=("n",), help="h")
    for name, render in RENDERERS.items():
        out = render([diag], {"f.cascade": source})
        assert out.endswith("\n"), name
    full = RENDERERS["full"]([diag], {"f.cascade": source})
    assert full.startswith("error[CAS300]: m\n")
    assert full.count("^") >= 1
