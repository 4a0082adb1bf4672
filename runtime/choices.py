"""Which finished work a stage was built on, and re-checking ``best(...)`` teacher choices after an eval edit.

A stage's training hash covers its settings and its parent's and teachers' hashes, but not the evals that
choose a ``best(a, b by d.e)`` teacher (``Stage.choice_evals``): what trains the stage is the checkpoint
chosen, and an edit of ``d.e`` (more items, another metric) usually leaves the choice as it was. So each
training start records in ``state.json``:

- ``build``: a fresh id of this training (a resume keeps it), and ``built_on``: the ``build`` of each stage it
  depends on, so that a dependency trained again since (e.g. after its own choice changed) retrains it too;
- ``chosen``: the checkpoint each ``best(...)`` route resolved to, and ``choice_hash``: the specs of the evals
  that chose it (``cascadec.contract.hashing.choice_hash``).

When only ``choice_hash`` differs, ``cascadec run`` re-resolves the choice after the candidates have been
evaluated with the new settings (:func:`recheck`), keeps the checkpoint when every route still picks the same
candidate, and retrains the stage (and so its dependants) when one does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cascadec.contract.hashing import choice_hash
from cascadec.contract.plan import Plan, Stage
from runtime.state import RunDir
from runtime.teachers import TeacherError, describe_teachers, resolve_teacher


def rebuilt_dependencies(stage: Stage, entry: Mapping[str, Any], states: Mapping[str, Any]) -> list[str]:
    """The stages ``stage`` depends on that were trained again since it started training (their ``build`` is
    not the one recorded in its ``built_on``); none when it recorded nothing (a run directory from before)."""
    built_on = entry.get("built_on") or {}
    return sorted(dep for dep, build in built_on.items()
                  if dep in stage.dependencies() and build and states.get(dep, {}).get("build") != build)


def choice_changed(plan: Plan, stage: Stage, entry: Mapping[str, Any]) -> bool:
    """Whether an eval that chooses a ``best(...)`` teacher of the stage changed since it trained."""
    now = choice_hash(plan, stage)
    return bool(now) and entry.get("choice_hash") != now


def best_choices(stage: Stage, rd: RunDir) -> dict[str, str]:
    """``{route: chosen candidate}`` of the stage's ``best(...)`` teachers from the scores recorded now.

    Raises TeacherError (``runtime.teachers.resolve_teacher``)."""
    return {route: resolve_teacher(ref, rd.root) for route, ref in sorted(stage.teachers.items())
            if ref.kind == "best"}


def record_start(plan: Plan, rd: RunDir, stage: Stage, *, fresh: bool) -> None:
    """Record what a starting (``fresh``) or resuming stage is built on (see the module docstring)."""
    try:
        chosen = best_choices(stage, rd)
    except TeacherError:
        chosen = None  # the stage reports it when it starts
    fields: dict[str, Any] = {"chosen": chosen, "choice_hash": choice_hash(plan, stage) if chosen is not None
                              else None}
    if fresh:
        states = rd.read_state()["stages"]
        fields["build"] = uuid.uuid4().hex
        fields["built_on"] = {dep: states.get(dep, {}).get("build") for dep in sorted(stage.dependencies())
                              if dep in states}
    rd.update_stage(stage.name, **fields)


def recheck(plan: Plan, rd: RunDir, stage: Stage) -> tuple[bool, str]:
    """Re-resolve the ``best(...)`` teachers of a finished stage whose choosing evals changed, from the
    scores recorded now (its candidates ran before it, so they have been evaluated again).

    Returns ``(kept, message)``: ``kept`` when every route picks the candidate the checkpoint was trained
    with (the new ``choice_hash`` and teacher scores are then recorded); the message says which candidates
    were picked, and by which scores.
    """
    entry = rd.stage_state(stage.name)
    try:
        now, described = best_choices(stage, rd), describe_teachers(stage, rd.root)
    except TeacherError as e:
        return False, f"its `best(...)` teacher cannot be resolved ({str(e).splitlines()[0]}): retraining"
    before = entry.get("chosen") or {}
    if now == before:
        rd.update_stage(stage.name, choice_hash=choice_hash(plan, stage), teachers=described)
        return True, f"evals of its `best(...)` teachers changed; the choice did not ({described}): checkpoint kept"
    moved = ", ".join(f"{route} = {before.get(route, '?')} -> {pick}" for route, pick in sorted(now.items())
                      if before.get(route) != pick)
    return False, f"its `best(...)` choice changed ({moved}; {described}): retraining"

