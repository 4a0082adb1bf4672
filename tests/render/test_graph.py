"""Stage graph renderers (Mermaid, DOT): structure and escaping of user text."""

from __future__ import annotations

from cascadec.graph import to_dot, to_mermaid
from cascadec.contract.plan import (
    DataSource,
    DistillParams,
    Domain,
    ModelRef,
    Optim,
    Plan,
    RewardSpec,
    Schedule,
    SFTParams,
    Stage,
    TeacherRef,
)


def plan_with(name: str = "x", model: str = "m", stage_names: tuple[str, str] = ("sft", "kd")) -> Plan:
    optim = Optim(lr=Schedule(peak=1e-5))
    first, second = stage_names
    return Plan(
        name=name,
        base=ModelRef(kind="hub", name=model),
        domains={"d": Domain(name="d", train=DataSource(kind="inline"), reward=RewardSpec(kind="exact"))},
        stages=[
            Stage(name=first, kind="sft", parent="base", domains={"d": 1.0}, params=SFTParams(optim=optim, steps=3)),
            Stage(name=second, kind="distill", parent=first, domains={"d": 1.0},
                  params=DistillParams(optim=optim, steps=2),
                  teachers={"default": TeacherRef(kind="stage", stage="base")}),
        ],
    )  # fmt: skip


def test_mermaid_edges_and_dashed_teacher() -> None:
    text = to_mermaid(plan_with())
    assert "  st_base --> st_sft\n" in text
    assert "  st_sft --> st_kd\n" in text
    assert '  st_base -.->|"teacher: default"| st_kd\n' in text
    assert "classDef" not in text  # no side branches here


def test_mermaid_escapes_labels_and_avoids_keyword_ids() -> None:
    text = to_mermaid(plan_with(model='a"b<c>&d', stage_names=("end", "kd")))
    assert 'st_base(["base: a#quot;b#lt;c#gt;#amp;d"])' in text
    assert "st_end --> st_kd" in text  # `end` alone would close a Mermaid block


def test_dot_escapes_quotes_backslashes_and_newlines() -> None:
    text = to_dot(plan_with(name='n"1', model="C:\\m\nx"))
    assert text.startswith('digraph "n\\"1" {\n')
    assert '"base" [label="base\\nC:\\\\m\\nx", shape=ellipse];' in text
    assert '"base" -> "kd" [style=dashed, label="teacher: default"];' in text
    assert text.count("{") == text.count("}")


def test_output_is_deterministic() -> None:
    assert to_dot(plan_with()) == to_dot(plan_with())
    assert to_mermaid(plan_with()) == to_mermaid(plan_with())
