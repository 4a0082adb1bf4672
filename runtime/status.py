"""``cascadec status``: where a run stands, one row per stage, then the score table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cascadec.contract.narrow import keep_names
from runtime.orchestrator import EXIT_USAGE, RunError, load_plan, plan_actions, run_in_progress
from runtime.progress import format_metrics, reader_safe
from runtime.scores import eval_hashes, missing_scores, print_scores
from runtime.state import RunDir, StateError, read_jsonl


def _last_metrics(rd: RunDir, stage: str) -> dict[str, Any]:
    rows = [r for r in read_jsonl(rd.metrics(stage)) if type(r.get("step")) is int]
    return rows[-1] if rows else {}


def status(run_dir: Path | str, *, console: Console | None = None) -> int:
    """Print where a run stands: each stage's status, step/steps, stop reason and last metrics.

    Returns 0, or 2 when ``run_dir`` is not a run directory.
    """
    console = console or Console()
    console.file = reader_safe(console.file)
    rd = RunDir(run_dir)
    if not rd.plan_json.is_file():
        console.print(f"[bold red]error[/]: `{rd.root}` is not a run directory (no plan.json)\n"
                      "help: pass the run directory, e.g. runs/<plan name>", highlight=False)
        return EXIT_USAGE
    try:
        plan = load_plan(rd.plan_json)
        states = rd.read_state()["stages"]
        actions = {s.name: a for s, a in plan_actions(plan, rd)}
        missing = missing_scores(plan, rd)
    except (RunError, StateError) as e:
        console.print(f"[bold red]error[/]: {e}", highlight=False)
        return EXIT_USAGE
    live = run_in_progress(rd)
    console.print(f"{plan.name}: {rd.root}" + (" (a `cascadec run` is in progress)" if live else ""),
                  highlight=False)
    from runtime.slurm.slurmcli import job_column

    jobs = job_column(rd)  # {} unless the run was submitted to Slurm
    table = Table()
    for col in ("stage", "kind", "status", "step", "stop reason", "teachers", "last metrics",
                *(["slurm job"] if jobs else [])):
        table.add_column(col)
    for stage in plan.stages:
        entry = states.get(stage.name, {})
        state = entry.get("status", "pending")
        if state == "done" and not (rd.final(stage.name) / "config.json").is_file():
            state = "done (final checkpoint missing: `cascadec run` trains it again)"
        elif state == "done" and actions.get(stage.name) == "reeval" and missing[stage.name] \
                and entry.get("eval_hash") == eval_hashes(plan)[stage.name]:
            state = "done (eval scores missing: `cascadec run` re-evaluates it)"
        elif state == "done" and actions.get(stage.name) == "reeval":
            state = "done (evals stale: eval settings changed)"
        elif state == "done" and actions.get(stage.name) == "recheck":
            state = "done (its best(...) evals changed: `cascadec run` re-checks the choice)"
        elif state == "done" and actions.get(stage.name) != "skip":
            state = "done (stale: plan changed)"
        elif state == "running" and not live:
            state = "interrupted (resumable)"
        elif state == "failed" and rd.error_file(stage.name).is_file():
            state = f"failed: {(rd.error_file(stage.name).read_text().strip().splitlines() or [''])[0]}"
        last = _last_metrics(rd, stage.name)
        # state.json moves at checkpoints; a live or crashed stage has logged steps past its checkpoint.
        saved, logged = entry.get("step", 0), last.get("step", -1) + 1
        step = f"{max(saved, logged)}/{stage.params.steps_label()}"
        if logged > saved and not state.startswith("done"):
            step += f" (checkpoint {saved})"
        table.add_row(*(escape(cell) for cell in (stage.name, stage.kind, state, step, entry.get("stop_reason") or "",
                                                  entry.get("teachers") or "", format_metrics(last),
                                                  *([jobs.get(stage.name, "")] if jobs else []))))
    console.print(keep_names(table, console.width, "stage"))
    if rd.evals_jsonl.is_file():
        print_scores(console, plan, rd)
    return 0
