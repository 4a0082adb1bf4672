"""`cascadec run --dry-run`: the action for each stage and the reason for it."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cascadec.contract.narrow import keep_names
from cascadec.contract.plan import Plan, Stage
from runtime.choices import rebuilt_dependencies
from runtime.scores import eval_hashes, stage_hashes
from runtime.state import RunDir


def print_actions(console: Console, plan: Plan, actions: list[tuple[Stage, str]], rd: RunDir) -> None:
    """The dry run's table: what `cascadec run` would do with each stage, and why."""
    console.print(f"dry run: {rd.root}", highlight=False)
    table = Table()
    for col in ("stage", "kind", "parent", "steps", "action", "why"):
        table.add_column(col)
    states = rd.read_state()["stages"]
    reruns = {stage.name for stage, action in actions if action == "run"}
    hashes, evals = stage_hashes(plan), eval_hashes(plan)
    for stage, action in actions:
        entry = states.get(stage.name, {})
        why = _why(stage, action, entry, reruns, (hashes[stage.name], evals[stage.name]),
                   rebuilt_dependencies(stage, entry, states))
        if action == "resume":
            step = states.get(stage.name, {}).get("step", 0)
            # state.json's step moves at checkpoints: at 0 there is nothing to resume from.
            action = f"resume at step {step}" if step else "run (no checkpoint yet)"
        elif action == "reeval":
            action = "re-evaluate"
        elif action == "recheck":
            action = "re-check teachers"
        table.add_row(stage.name, stage.kind, stage.parent, stage.params.steps_label(), action, why)
    console.print(keep_names(table, console.width, "stage", "parent"))


def _why(stage: Stage, action: str, entry: dict, reruns: set[str], now: tuple[str, str],
         rebuilt: list[str] | None = None) -> str:
    """The reason for ``action`` (``runtime.orchestrator.plan_actions``), from the stage's state.json entry,
    its training and eval hashes ``now`` and the dependencies ``rebuilt`` since it trained."""
    upstream = sorted(stage.dependencies() & reruns)
    if action == "skip":
        return "done; training and eval inputs unchanged"
    if action == "reeval":
        return "training inputs unchanged; " + ("eval settings changed" if entry.get("eval_hash") != now[1]
                                                 else "eval scores missing from evals.jsonl")
    if action == "recheck":
        evals = ", ".join(f"{d}.{e}" for d, e in sorted(stage.choice_evals()))
        return (f"eval settings of its best(...) teacher changed ({evals}): retrains only if the choice "
                "changes, else re-evaluates")
    if action == "resume":
        return f"{'failed' if entry.get('status') == 'failed' else 'interrupted'} with training inputs unchanged"
    if not entry or entry.get("status") == "pending":
        return "never run"
    if upstream:
        return "it starts from " + ", ".join(f"`{n}`" for n in upstream) + (", which re-run" if len(upstream) > 1
                                                                               else ", which re-runs")
    if rebuilt:
        return ("it was trained from " + ", ".join(f"`{n}`" for n in rebuilt)
                + (", which were" if len(rebuilt) > 1 else ", which was") + " trained again since")
    if entry.get("hash") != now[0]:
        return (f"training inputs changed (hash {str(entry.get('hash'))[:8]} -> {now[0][:8]}: its settings, "
                "data, reward, base model, chat template or the evals its until rules read)")
    return "final checkpoint missing"
