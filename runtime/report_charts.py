"""The report's two charts (``cascadec report``), drawn with matplotlib from a ``runtime.report.RunSummary``.

- The cascade chart: each ``domain.eval``'s score after each stage, base first (the papers' per-stage table
  as lines; Nemotron-Cascade 1 Tables 2, 4-8). Each point has a bar of ± one standard error from its eval's
  size (``runtime.changes.record_se``: 64 items at p = 0.5 is ±0.06; clustered where items repeat a prompt),
  a stage's mid-stage eval points sit between its parent's column and its own at the fraction of its steps
  they were taken at, and its fixed ``until`` thresholds are drawn over that span (thresholds relative to a
  teacher's score are not). The x labels give each stage's kind and domains.
- The training curves: stages end to end on a cumulative step axis, one panel per metric, plus per-domain
  panels where a stage logged ``METRIC/DOMAIN`` (GRPO ``reward_mean/<domain>``, distill
  ``reverse_kl/<domain>``). A series that a stage logged as exactly 0 at every step for a KL metric was not
  measured (a GRPO stage with ``kl = 0`` has no reference model) and is left out, as is a panel with nothing
  to draw.

Both are drawn 1200 pixels wide, the width the HTML page shows them at, so their text is read at its size.
"""

from __future__ import annotations

import io
from typing import Any

from runtime.changes import record_se

#: panel title -> metric keys to plot (the first present in a stage's rows is used for that stage)
CURVES: dict[str, tuple[str, ...]] = {
    "training loss (SFT: cross-entropy; GRPO/distill: policy loss)": ("loss",),
    "reward": ("reward_mean",),
    "KL (GRPO: to reference; distill: reverse KL to teacher)": ("kl", "reverse_kl"),
    "response length (tokens)": ("response_len",),
    "entropy (nats/token)": ("entropy",),
}
#: per-domain metrics (``KEY/DOMAIN``) drawn one panel each: panel title -> key
PER_DOMAIN: dict[str, str] = {"reward by domain": "reward_mean", "reverse KL to the teacher by domain": "reverse_kl"}
#: metrics whose all-zero series mean "not measured" rather than "no drift"
UNMEASURED_WHEN_ZERO = ("kl",)
DPI = 100
WIDTH_IN = 12.0  # 1200 px: the page's width


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def stage_label(summary: Any, name: str) -> str:
    """A column's x label: the stage's name (marked as in the tables), its kind and its domains."""
    from runtime.report import _label

    row = next((s for s in summary.stages if s.name == name), None)
    if row is None:
        return _label(summary, name)
    return f"{_label(summary, name)}\n{row.kind}" + (f": {', '.join(row.domains)}" if row.domains else "")


def eval_points(summary: Any, ev: str) -> list[tuple[float, float, float, bool]]:
    """(x, score, standard error, final) of every recorded point of ``ev``: a stage's final point at its
    column, its mid-stage points at ``start + (column - start) * step / steps`` (``start``: its parent's
    column)."""
    steps = {s.name: s.steps for s in summary.stages}
    final_step = {c: max((int(r["step"]) for r in summary.points if r["stage"] == c), default=0)
                  for c in summary.columns}
    out = []
    for r in summary.points:
        stage = r["stage"]
        if f"{r['domain']}.{r['eval']}" != ev or stage not in summary.columns:
            continue
        x, step = summary.columns.index(stage), int(r["step"])
        final = step >= final_step[stage]
        if not final and steps.get(stage):
            start = _start(summary, stage)
            x = start + (x - start) * step / steps[stage]
        out.append((float(x), float(r["score"]), record_se(r), final))
    return sorted(out)


def _start(summary: Any, stage: str) -> int:
    """The column a stage starts from: its parent's, else the column before its own."""
    parent = next((s.parent for s in summary.stages if s.name == stage), None)
    x = summary.columns.index(stage)
    return summary.columns.index(parent) if parent in summary.columns[:x] else x - 1


def cascade_chart(summary: Any) -> bytes:
    """PNG of each ``domain.eval``'s score after each stage (see the module docstring)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, 5.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, ev in enumerate(summary.evals):
        points = eval_points(summary, ev)
        final = [p for p in points if p[3]]
        if not final:
            continue
        color = f"C{i % 10}"
        ax.errorbar([p[0] for p in final], [p[1] for p in final], yerr=[p[2] for p in final], marker="o",
                    capsize=3, color=color, label=ev)
        mid = [p for p in points if not p[3]]
        if mid:
            ax.errorbar([p[0] for p in mid], [p[1] for p in mid], yerr=[p[2] for p in mid], marker="o",
                        linestyle="none", fillstyle="none", capsize=2, color=color, alpha=0.7)
        _draw_targets(ax, summary, ev, color)
    _mark_teachers(ax, summary)
    ax.set_xticks(range(len(summary.columns)), [stage_label(summary, c) for c in summary.columns])
    ax.set_ylabel("eval score (bars: ± 1 standard error)")
    ax.set_title(f"{summary.name}: eval score after each stage (hollow: mid-stage evals; dashed: until targets)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    return _png(fig)


def _draw_targets(ax: Any, summary: Any, ev: str, color: str) -> None:
    """Each fixed ``until`` threshold on ``ev`` as a dashed segment over its stage's span."""
    for row in summary.stages:
        if row.name not in summary.columns:
            continue
        x, start = summary.columns.index(row.name), _start(summary, row.name)
        for key, op, value in row.targets:
            if key == ev:
                ax.hlines(value, start, x, colors=color, linestyles="dashed", linewidth=1)
                ax.annotate(f"until {key} {op} {value:g}", ((start + x) / 2, value), textcoords="offset points",
                            xytext=(0, 4), ha="center", fontsize="small", color=color)


def _mark_teachers(ax: Any, summary: Any) -> None:
    """Ring each distill stage's teacher at the evals of the domains it teaches (``default``: every domain
    without a route of its own), labelled "teacher of <stage>"."""
    for row in summary.stages:
        for route, teacher in sorted(row.teachers.items()):
            if teacher not in summary.columns:
                continue
            x = summary.columns.index(teacher)
            taught = [ev for ev in summary.evals if ev.split(".", 1)[0] == route
                      or (route == "default" and ev.split(".", 1)[0] not in row.teachers)]
            for ev in taught:
                if ev in summary.scores[teacher]:
                    y = summary.scores[teacher][ev]
                    ax.scatter([x], [y], s=260, facecolors="none", edgecolors="black", linewidths=1.5, zorder=3)
                    ax.annotate(f"teacher of {row.name}", (x, y), textcoords="offset points", xytext=(8, -14),
                                fontsize="small")


def curve_panels(summary: Any) -> dict[str, list[tuple[str, list[tuple[int, float]]]]]:
    """``{panel title: [(series label, [(cumulative step, value)])]}`` of every panel with something to draw
    (see the module docstring), stages end to end in plan order."""
    panels: dict[str, list[tuple[str, list[tuple[int, float]]]]] = {}
    offset = 0
    for s in summary.stages:
        rows = summary.metrics.get(s.name, [])
        if not rows:
            continue
        for title, keys in CURVES.items():
            key = next((k for k in keys if any(k in r for r in rows)), None)
            series = _series(rows, key, offset) if key else []
            if series and not (key in UNMEASURED_WHEN_ZERO and all(v == 0 for _, v in series)):
                panels.setdefault(title, []).append((s.name, series))
        for title, key in PER_DOMAIN.items():
            for domain in sorted({k.split("/", 1)[1] for r in rows for k in r if k.startswith(key + "/")}):
                series = _series(rows, f"{key}/{domain}", offset)
                if series:
                    panels.setdefault(title, []).append((f"{domain} ({s.name})", series))
        offset += max(int(r["step"]) for r in rows) + 1
    return {t: panels[t] for t in (*CURVES, *PER_DOMAIN) if t in panels}


def _series(rows: list[dict[str, Any]], key: str, offset: int) -> list[tuple[int, float]]:
    return sorted((offset + int(r["step"]), float(r[key])) for r in rows if r.get(key) is not None)


def curves_chart(summary: Any) -> bytes:
    """PNG of :func:`curve_panels`, two panels a row; stage boundaries as grey lines."""
    from matplotlib.figure import Figure

    panels = curve_panels(summary)
    rows_ = max(1, -(-len(panels) // 2))
    fig = Figure(figsize=(WIDTH_IN, 3.6 * rows_), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows_, 2, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    bounds, offset = [], 0
    for s in summary.stages:
        rows = summary.metrics.get(s.name, [])
        if rows:
            offset += max(int(r["step"]) for r in rows) + 1
            bounds.append(offset - 0.5)
    colors = {s.name: f"C{i % 10}" for i, s in enumerate(summary.stages)}
    for ax, (title, series) in zip(axes, panels.items()):
        for i, (label, pts) in enumerate(series):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label,
                    color=colors.get(label, f"C{i % 10}"))
        for b in bounds:
            ax.axvline(b, color="grey", alpha=0.3, linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("step (stages end to end, plan order)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if not panels:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no training metrics recorded", ha="center", va="center", color="grey")
    return _png(fig)
