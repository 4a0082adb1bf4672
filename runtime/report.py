"""``cascadec report``: the cascade chart, training curves, one self-contained HTML page, a terminal table.

The cascade chart is the papers' per-stage table drawn as lines: each domain's eval score after each stage,
base model first (Nemotron-Cascade 1 Tables 2, 4-8; paper-notes §5.2). Curves are read from each stage's
``metrics.jsonl`` and laid end to end in plan order, so a regression and its recovery are visible at a glance.

Inputs (docs/ARCHITECTURE.md, "Run directory"): ``plan.json``, ``state.json``, ``evals.jsonl``,
``stages/*/metrics.jsonl``. Outputs (default ``<run>/report/``): ``cascade.png``, ``curves.png``,
``report.html`` (images embedded as base64), all written atomically.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cascadec.contract.errors import UserError
from cascadec.contract.narrow import keep_names
from runtime.report_charts import cascade_chart, curves_chart
from runtime.state import (
    BASE, RunDir, StateError, atomic_write_bytes, atomic_write_text, last_eval_points, read_eval_records, read_jsonl,
    skipped_lines_warning,
)


class ReportError(UserError):
    """The run directory cannot be reported on; the message says why and how to fix it."""


@dataclass(frozen=True)
class StageRow:
    name: str
    kind: str
    parent: str
    branch: bool
    status: str
    step: int
    steps: int
    stop_reason: str | None
    teachers: dict[str, str] = field(default_factory=dict)  # distill: route (domain or default) -> stage
    teacher_choice: str | None = None  # state.json `teachers`: the choice and the scores that made it
    domains: tuple[str, ...] = ()
    hyper: dict[str, str] = field(default_factory=dict)  # hyperparameter -> value as written in the table
    targets: tuple[tuple[str, str, float], ...] = ()  # fixed `until` thresholds: (domain.eval, op, value)
    train_s: float | None = None  # seconds of its training steps (metrics' step_time_s summed)
    decontaminated: tuple[str, ...] = ()  # state.json `decontaminated`: one line per domain (runtime.decontaminate)


@dataclass
class RunSummary:
    """Everything the report draws, read from one run directory.

    ``scores[stage][domain.eval]`` is the score recorded at that stage's last eval point; ``columns`` lists
    the stages with at least one score, ``base`` first, then plan order. ``stale``: the columns whose scores
    predate a change of the evals or the plan (``runtime.scores.stale_scores``), marked ``*``;
    ``skipped``: the damaged lines of ``evals.jsonl`` that were left out.
    """

    name: str
    stages: list[StageRow]
    evals: list[str]
    columns: list[str]
    scores: dict[str, dict[str, float]]
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    skipped: int = 0
    points: list[dict[str, Any]] = field(default_factory=list)  # every eval record, mid-stage ones too


def load_run(run_dir: Path | str) -> RunSummary:
    """Read ``plan.json``, ``state.json``, ``evals.jsonl`` and the stages' metrics of a run.

    Raises:
        ReportError: no ``plan.json`` in ``run_dir`` (not a run directory), or a damaged ``state.json``.
    """
    rd = RunDir(run_dir)
    if not rd.plan_json.is_file():
        raise ReportError(
            f"`{rd.root}` is not a run directory: no plan.json there"
            "\nhelp: pass the directory `cascadec run` wrote, e.g. `cascadec report runs/<cascade name>`"
        )
    plan = json.loads(rd.plan_json.read_text())
    try:
        state = rd.read_state()["stages"]
    except StateError as e:
        raise ReportError(str(e)) from None
    stages = []
    for s in plan["stages"]:
        st = state.get(s["name"], {})
        rows = read_jsonl(rd.metrics(s["name"]))
        stages.append(StageRow(
            name=s["name"], kind=s["kind"], parent=s["parent"], branch=bool(s.get("branch", False)),
            status=st.get("status", "pending"), step=int(st.get("step", 0) or 0),
            steps=int(s["params"].get("steps") or st.get("step", 0) or 0),
            stop_reason=st.get("stop_reason"), teachers=_resolved_teachers(rd, s["name"]),
            teacher_choice=st.get("teachers"), domains=tuple(s["domains"]), hyper=hyperparameters(s),
            targets=tuple((f"{c['domain']}.{c['eval']}", c["op"], float(c["value"])) for c in s.get("until", [])
                          if c.get("kind") == "threshold" and not c.get("relative_to")),
            train_s=sum(float(r["step_time_s"]) for r in rows if "step_time_s" in r)
            if any("step_time_s" in r for r in rows) else None,
            decontaminated=_decontaminated(st.get("decontaminated")),
        ))
    records, skipped = read_eval_records(rd.evals_jsonl)
    scores = {stage: {ev: float(r["score"]) for ev, r in per.items()}
              for stage, per in last_eval_points(records).items()}
    declared = [f"{d}.{e['name']}" for d, dom in sorted(plan["domains"].items()) for e in dom.get("evals", [])]
    recorded = sorted({ev for per in scores.values() for ev in per} - set(declared))
    order = [BASE] + [s.name for s in stages]
    columns = [n for n in order if n in scores]
    metrics = {s.name: read_jsonl(rd.metrics(s.name)) for s in stages}
    return RunSummary(name=plan["name"], stages=stages, evals=declared + recorded, columns=columns,
                      scores=scores, metrics={k: v for k, v in metrics.items() if v},
                      stale=_stale(rd) & set(columns), skipped=skipped, points=records)


def hyperparameters(stage: dict[str, Any]) -> dict[str, str]:
    """The hyper-parameters of a stage (its ``plan.json`` entry) that the report's stage table shows."""
    p = stage["params"]
    lr = p.get("optim", {}).get("lr", {})
    out = {"steps": str(p.get("steps") or f"{p.get('epochs')} epochs"),
           "lr": f"{lr.get('peak', 0):g}" + (f" {lr['kind']}" if lr.get("kind", "constant") != "constant" else "")}
    if "batch_size" in p:
        out["batch"] = str(p["batch_size"])
    if "prompts_per_step" in p:
        out["batch"] = f"{p['prompts_per_step']} × {p.get('rollouts_per_prompt', 1)}"
    for key in ("temperature", "kl", "max_response", "max_seq"):
        if p.get(key) is not None:
            out[key] = f"{p[key]:g}" if isinstance(p[key], float) else str(p[key])
    return out


def _decontaminated(entry: Any) -> tuple[str, ...]:
    """``domain: decontaminated D of N training rows against d.e`` for each domain of a stage's record."""
    if not isinstance(entry, dict):
        return ()
    return tuple(f"{d}: decontaminated {r.get('dropped')} of {r.get('rows')} training rows against "
                 + ", ".join(map(str, r.get("evals", []))) for d, r in sorted(entry.items()) if isinstance(r, dict))


def _print_decontaminated(console: Console, summary: RunSummary) -> None:
    for s in summary.stages:
        for line in s.decontaminated:
            console.print(f"{s.name}: {line}", highlight=False, soft_wrap=True, markup=False)


def _resolved_teachers(rd: RunDir, stage: str) -> dict[str, str]:
    """The teachers a distill stage resolved (``stages/<stage>/teachers.json``), {} before it ran."""
    try:
        teachers = json.loads((rd.stage_dir(stage) / "teachers.json").read_text())["teachers"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {str(k): str(v) for k, v in teachers.items()} if isinstance(teachers, dict) else {}


def _stale(rd: RunDir) -> set[str]:
    from cascadec.contract.plan import Plan
    from runtime.scores import stale_scores

    try:
        return stale_scores(Plan.from_json(rd.plan_json.read_text()), rd)
    except ValueError:
        return set()  # a plan.json of an older layout: the scores are shown unmarked


def _label(summary: RunSummary, stage: str) -> str:
    row = next((s for s in summary.stages if s.name == stage), None)
    label = f"{stage} (branch)" if row is not None and row.branch else stage
    return f"{label} *" if stage in summary.stale else label


def score_table(summary: RunSummary) -> Table:
    """A rich table: one row per ``domain.eval``, one column per stage (base first), '-' where not run."""
    table = Table(title=f"cascade `{summary.name}`: eval score after each stage")
    table.add_column("domain.eval")
    for col in summary.columns:
        table.add_column(_label(summary, col), justify="right")
    for ev in summary.evals:
        table.add_row(ev, *(f"{summary.scores[c][ev]:.3f}" if ev in summary.scores[c] else "-" for c in summary.columns))
    return table


def stage_table(summary: RunSummary) -> Table:
    """A rich table of the stages: kind, parent, status, steps done / planned, stop reason, teachers."""
    table = Table(title="stages")
    for col in ("stage", "kind", "parent", "status", "steps", "stop reason", "teachers"):
        table.add_column(col)
    for s in summary.stages:
        table.add_row(*(escape(c) for c in (_label(summary, s.name), s.kind, s.parent, s.status, f"{s.step}/{s.steps}",
                                            s.stop_reason or "", s.teacher_choice or "")))
    return table


def text_report(summary: RunSummary, width: int = 120) -> str:
    """The score table and the stage table as plain text (no colour codes)."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    _print_scores(console, summary, None)
    console.print(keep_names(stage_table(summary), console.width, "stage", "parent"))
    _print_decontaminated(console, summary)
    return console.export_text()


def _print_scores(console: Console, summary: RunSummary, evals_jsonl: Path | None) -> None:
    from runtime.scores import STALE_NOTE

    console.print(keep_names(score_table(summary), console.width, "domain.eval"))
    if summary.stale:
        console.print(STALE_NOTE, highlight=False, soft_wrap=True)
    if summary.skipped and evals_jsonl is not None:
        console.print(skipped_lines_warning(evals_jsonl, summary.skipped), highlight=False, soft_wrap=True)


_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cascade {{ s.name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }
td { vertical-align: top; }
table { border-collapse: collapse; margin: 1em 0; } th, td { border: 1px solid #ccc; padding: 4px 10px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.best { font-weight: bold; }
img { width: 100%; max-width: 1200px; }
</style></head><body>
<h1>cascade <code>{{ s.name }}</code></h1>
<h2>eval score after each stage</h2>
<table id="scores"><tr><th>domain.eval</th>{% for c in s.columns %}<th>{{ label(c) }}</th>{% endfor %}</tr>
{% for ev in s.evals %}<tr><td>{{ ev }}</td>{% for c in s.columns %}{% set v = s.scores[c].get(ev) %}
<td class="num{% if v is not none and v == best[ev] %} best{% endif %}">{{ "%.3f"|format(v) if v is not none else "-" }}</td>
{% endfor %}</tr>
{% endfor %}</table>
{% if s.stale %}<p>{{ stale_note }}</p>{% endif %}
<img alt="cascade chart" src="data:image/png;base64,{{ cascade }}">
<h2>stages</h2>
<table id="stages"><tr><th>stage</th><th>kind</th><th>parent</th><th>domains</th><th>status</th><th>steps</th>
<th>hyper-parameters</th><th>training time</th><th>stop reason</th><th>teachers</th></tr>
{% for r in s.stages %}<tr><td>{{ label(r.name) }}</td><td>{{ r.kind }}</td><td>{{ r.parent }}</td>
<td>{{ r.domains|join(", ") }}</td><td>{{ r.status }}</td><td class="num">{{ r.step }}/{{ r.steps }}</td>
<td>{% for k, v in r.hyper.items() %}{{ k }} = {{ v }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
<td class="num">{{ "%.1f s"|format(r.train_s) if r.train_s is not none else "" }}</td>
<td>{{ r.stop_reason or "" }}</td><td>{{ r.teacher_choice or "" }}</td></tr>
{% endfor %}</table>
{% for r in s.stages %}{% for line in r.decontaminated %}<p>{{ r.name }}: {{ line }}</p>
{% endfor %}{% endfor %}<h2>training curves</h2>
<img alt="training curves" src="data:image/png;base64,{{ curves }}">
</body></html>
""")


def html_page(summary: RunSummary, cascade_png: bytes, curves_png: bytes) -> str:
    """One self-contained HTML page: score table (best score per eval in bold), charts, stage table."""
    from runtime.scores import STALE_NOTE

    best = {ev: max((summary.scores[c][ev] for c in summary.columns if ev in summary.scores[c]), default=None)
            for ev in summary.evals}
    return _HTML.render(
        s=summary, best=best, label=lambda n: _label(summary, n), stale_note=STALE_NOTE,
        cascade=base64.b64encode(cascade_png).decode(), curves=base64.b64encode(curves_png).decode(),
    )


def report(run_dir: Path | str, out_dir: Path | str | None = None, *, console: Console | None = None) -> Path:
    """Write ``cascade.png``, ``curves.png`` and ``report.html`` for a run and print the score table.

    Args:
        run_dir: the run directory (``runs/<cascade name>/``).
        out_dir: where to write; default ``<run_dir>/report``.
        console: where the terminal tables go (default: standard output).

    Returns:
        The path of ``report.html``.

    Raises:
        ReportError: ``run_dir`` is not a run directory.
    """
    summary = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    cascade_png, curves_png = cascade_chart(summary), curves_chart(summary)
    atomic_write_bytes(out / "cascade.png", cascade_png)
    atomic_write_bytes(out / "curves.png", curves_png)
    page = out / "report.html"
    atomic_write_text(page, html_page(summary, cascade_png, curves_png))
    console = console or Console()
    _print_scores(console, summary, RunDir(run_dir).evals_jsonl)
    console.print(stage_table(summary))
    _print_decontaminated(console, summary)
    console.print(f"report: {page}")
    return page


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runtime.report RUN_DIR [OUT_DIR]``; exit 2 with a message (no traceback) on bad input."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m runtime.report RUN_DIR [OUT_DIR]", file=sys.stderr)
        return 2
    try:
        report(args[0], args[1] if len(args) == 2 else None)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
