"""Per-stage changes against the parent with standard errors (runtime.changes), checked by hand."""

import io
import math

import pytest
from rich.console import Console

from cascadec.contract.plan import DataSource, Domain, ModelRef, Optim, Plan, RewardSpec, Schedule, SFTParams, Stage
from runtime.changes import change, change_table, score_se


def test_standard_errors_by_hand() -> None:
    assert score_se(0.5, 256) == pytest.approx(0.03125)  # sqrt(0.25 / 256)
    assert score_se(0.0, 10) == 0.0 and score_se(1.2, 10) == 0.0 and score_se(0.5, 0) == 0.0
    delta, se = change({"score": 0.6, "n": 100}, {"score": 0.5, "n": 100})
    assert delta == pytest.approx(0.1)
    assert se == pytest.approx(math.sqrt(0.24 / 100 + 0.25 / 100))


def plan() -> Plan:
    dom = Domain(name="a", train=DataSource(kind="inline", rows=[{"prompt": "x", "answer": "1"}]),
                 reward=RewardSpec(kind="exact"))
    params = SFTParams(optim=Optim(lr=Schedule(peak=1e-3)), steps=1)
    stages = [Stage(name="s1", kind="sft", parent="base", domains={"a": 1.0}, params=params),
              Stage(name="s2", kind="sft", parent="s1", domains={"a": 1.0}, params=params)]
    return Plan(name="t", base=ModelRef(kind="tiny", name="llama"), domains={"a": dom}, stages=stages)


def test_table_marks_changes_of_two_standard_errors() -> None:
    points = {"base": {"a.held": {"score": 0.1, "n": 256}}, "s1": {"a.held": {"score": 0.5, "n": 256}},
              "s2": {"a.held": {"score": 0.52, "n": 256}}}
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(change_table(plan(), points))
    text = buf.getvalue()
    assert "s1 (vs base)" in text and "+0.400 ± 0.036 ▲" in text
    assert "s2 (vs s1)" in text and "+0.020 ± 0.044" in text and "+0.020 ± 0.044 ▲" not in text
    assert change_table(plan(), {"s2": {"a.held": {"score": 0.5, "n": 8}}}) is None
