"""Eval scores of a run: the plan's hashes as the runtime reads them, which scores are missing or stale, and the
score table `cascadec run` and `cascadec status` print (`cascadec report` draws the same numbers).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cascadec.contract.hashing import ensure_hashes
from cascadec.contract.narrow import keep_names
from cascadec.contract.plan import Plan
from runtime.changes import change_table
from runtime.state import BASE, RunDir, last_eval_points, read_eval_records, skipped_lines_warning


def stage_hashes(plan: Plan) -> dict[str, str]:
    """Each stage's training hash, as the compiler stored it (a plan built by hand gets it from the same
    function, `cascadec.contract.hashing.hash_plan`)."""
    return {s.name: s.hash for s in ensure_hashes(plan).stages}


def eval_hashes(plan: Plan) -> dict[str, str]:
    """Each stage's eval hash (its training hash plus every domain's evals, rewards and system prompts)."""
    return {s.name: s.eval_hash for s in ensure_hashes(plan).stages}


def base_eval_hash(plan: Plan) -> str:
    """What the base-model evals depend on (`Plan.base_eval_hash`)."""
    return ensure_hashes(plan).base_eval_hash


def declared_evals(plan: Plan) -> set[str]:
    """Every ``domain.eval`` of the plan (each is scored after the base model and after every stage)."""
    return {f"{name}.{e.name}" for name, d in plan.domains.items() for e in d.evals}


def missing_scores(plan: Plan, rd: RunDir) -> dict[str, set[str]]:
    """``{stage or base: the declared evals with no record in evals.jsonl}`` (e.g. the file was deleted)."""
    recorded = last_eval_points(read_eval_records(rd.evals_jsonl)[0])
    declared = declared_evals(plan)
    return {name: declared - set(recorded.get(name, {})) for name in [BASE, *(s.name for s in plan.stages)]}


def final_scores(rd: RunDir) -> dict[str, dict[str, tuple[float, str]]]:
    """``{stage: {"domain.eval": (score, metric)}}`` from each stage's last eval point (well-formed records
    only: see ``runtime.state.read_eval_records``)."""
    return {s: {k: (float(r["score"]), str(r.get("metric", ""))) for k, r in per.items()}
            for s, per in last_eval_points(read_eval_records(rd.evals_jsonl)[0]).items()}


def stale_scores(plan: Plan, rd: RunDir) -> set[str]:
    """The base model and stages whose recorded scores were measured under other eval settings or another
    plan than ``plan`` (their eval hash in ``state.json`` differs): e.g. a re-evaluation interrupted after
    some stages; ``cascadec run`` measures them again."""
    state = rd.read_state()
    evals = eval_hashes(plan)
    stale = {s.name for s in plan.stages if state["stages"].get(s.name, {}).get("eval_hash") != evals[s.name]}
    if state.get(BASE, {}).get("hash") != base_eval_hash(plan):
        stale.add(BASE)
    return stale


STALE_NOTE = "* scores measured before the evals or the plan changed; `cascadec run` measures them again"


def print_scores(console: Console, plan: Plan, rd: RunDir) -> None:
    """The score table under its title, the note on stale (``*``) scores, and one warning line when
    ``evals.jsonl`` had damaged lines."""
    console.print(f"{plan.name}: eval scores after each stage", highlight=False)
    console.print(keep_names(score_table(plan, rd), console.width, "stage"))
    changes = change_table(plan, last_eval_points(read_eval_records(rd.evals_jsonl)[0]))
    if changes is not None:
        console.print("change of each stage against its parent (± standard error)", highlight=False)
        console.print(keep_names(changes, console.width, "stage (vs parent)"))
    if stale_scores(plan, rd) & set(final_scores(rd)):
        console.print(STALE_NOTE, highlight=False, soft_wrap=True)
    skipped = read_eval_records(rd.evals_jsonl)[1]
    if skipped:
        console.print(skipped_lines_warning(rd.evals_jsonl, skipped), highlight=False, soft_wrap=True)


def score_table(plan: Plan, rd: RunDir) -> Table:
    """Every domain's eval score after each stage, base first (the papers' per-stage tables). Stages whose
    scores are stale (:func:`stale_scores`) are marked ``*`` (:func:`print_scores` adds :data:`STALE_NOTE`)."""
    scores = final_scores(rd)
    stale = stale_scores(plan, rd) & set(scores)
    keys = sorted({k for s in scores.values() for k in s})
    table = Table()
    table.add_column("stage")
    metrics = {k: m for s in scores.values() for k, (_, m) in s.items()}
    for key in keys:
        table.add_column(f"{key} ({metrics[key]})", justify="right")
    for name in [BASE, *(s.name for s in plan.stages)]:
        if name in scores:
            label = f"{name} *" if name in stale else name
            table.add_row(label, *(f"{scores[name][k][0]:.3f}" if k in scores[name] else "-" for k in keys))
    return table


