"""The cascade chart rings each MOPD stage's teachers at the evals of the domains they teach."""

from runtime.report import RunSummary, StageRow
from runtime.report_charts import _mark_teachers, cascade_chart


class Axes:
    def __init__(self) -> None:
        self.rings: list[tuple[float, float]] = []
        self.notes: list[str] = []

    def scatter(self, xs, ys, **_):
        self.rings.append((xs[0], ys[0]))

    def annotate(self, text, *_, **__):
        self.notes.append(text)

    def hlines(self, y, x0, x1, **_):
        self.rings.append((x0, x1, y))


def summary() -> RunSummary:
    row = lambda name, kind, parent, teachers=None: StageRow(  # noqa: E731
        name=name, kind=kind, parent=parent, branch=False, status="done", step=1, steps=1, stop_reason=None,
        teachers=teachers or {})
    stages = [row("format", "sft", "base"), row("rl_a", "grpo", "format"), row("rl_b", "grpo", "rl_a"),
              row("mopd", "distill", "rl_b", {"a": "rl_a", "default": "rl_b"})]
    scores = {"base": {"a.held": 0.1, "b.held": 0.1, "c.held": 0.0}, "format": {"a.held": 0.5, "b.held": 0.4},
              "rl_a": {"a.held": 0.7, "b.held": 0.4}, "rl_b": {"a.held": 0.6, "b.held": 0.8, "c.held": 0.3},
              "mopd": {"a.held": 0.7, "b.held": 0.8}}
    return RunSummary(name="q", stages=stages, evals=["a.held", "b.held", "c.held"],
                      columns=["base", "format", "rl_a", "rl_b", "mopd"], scores=scores)


def test_teachers_are_ringed_at_the_domains_they_teach() -> None:
    ax = Axes()
    _mark_teachers(ax, summary())
    # a: rl_a (column 2); default (b and c, no route of their own): rl_b (column 3)
    assert sorted(ax.rings) == [(2, 0.7), (3, 0.3), (3, 0.8)]
    assert ax.notes == ["teacher of mopd"] * 3


def test_chart_with_teachers_renders() -> None:
    assert cascade_chart(summary()).startswith(b"\x89PNG")


def test_until_targets_are_drawn_over_their_stage() -> None:
    from dataclasses import replace

    from runtime.report_charts import _draw_targets

    s = summary()
    s.stages[1] = replace(s.stages[1], targets=(("a.held", ">=", 0.9),))
    ax = Axes()
    _draw_targets(ax, s, "a.held", "C0")
    assert ax.rings == [(1, 2, 0.9)] and ax.notes == ["until a.held >= 0.9"]  # rl_a spans format -> rl_a
    s.stages[2] = replace(s.stages[2], parent="format", targets=(("a.held", ">=", 0.8),))
    ax = Axes()
    _draw_targets(ax, s, "a.held", "C0")
    assert ax.rings == [(1, 2, 0.9), (1, 3, 0.8)]  # rl_b, started from format, spans format -> rl_b
    _draw_targets(ax, s, "b.held", "C1")
    assert len(ax.rings) == 2  # no target on b.held
