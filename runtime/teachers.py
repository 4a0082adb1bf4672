"""Teachers of a ``distill`` stage: resolving ``best(...)``, routing domains, and the tokenizer check.

Nemotron-Cascade 2 (§4.4, paper-notes §3.2) distils from checkpoints of the same cascade, "the strongest
validation checkpoint for each benchmark category", so teacher and student share one tokenizer and the
teacher only has to score the student's own tokens. ``best(a, b by domain.eval)`` picks that checkpoint at run
time from the scores recorded in ``evals.jsonl`` after each candidate finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from cascadec.contract.errors import UserError
from cascadec.contract.params import DistillParams
from cascadec.contract.plan import Plan, Stage, TeacherRef
from runtime.state import BASE, RunDir, last_eval_points, read_jsonl

DEFAULT = "default"


class TeacherError(UserError, ValueError):
    """A teacher that cannot be used; the message names the stage/teacher and ends with a ``help:`` line."""


def _final_score(rows: Sequence[Mapping[str, Any]], stage: str, domain: str | None, eval_name: str | None) -> float | None:
    """The score of ``domain.eval`` recorded at ``stage``'s last eval point (its end), or None."""
    row = last_eval_points(rows).get(stage, {}).get(f"{domain}.{eval_name}")
    return None if row is None else float(row["score"])


def resolve_teacher(ref: TeacherRef, run_dir: Path | str) -> str:
    """The checkpoint a teacher reference stands for: a stage name, or ``"base"``.

    ``best(a, b by d.e)`` returns the candidate with the highest ``d.e`` score recorded at that candidate's
    last eval point (the evals run when it finished); a tie goes to the candidate listed first.

    Raises:
        TeacherError: a ``best(...)`` whose eval was never recorded for some candidate (the message names the
            eval and the candidates without a score), or a malformed reference.
    """
    if ref.kind == "stage":
        if not ref.stage:
            raise TeacherError("teacher reference has no stage\nhelp: write `domain = STAGE` or `domain = base`")
        return ref.stage
    if not ref.candidates:
        raise TeacherError("`best(...)` has no candidates\nhelp: write `best(stage_a, stage_b by domain.eval)`")
    rows = read_jsonl(RunDir(run_dir).evals_jsonl)
    key = f"{ref.domain}.{ref.eval}"
    scores = {c: _final_score(rows, c, ref.domain, ref.eval) for c in ref.candidates}
    missing = [c for c, s in scores.items() if s is None]
    if missing:
        names = ", ".join(f"`{c}`" for c in ref.candidates)
        lacking = ", ".join(f"`{c}`" for c in missing)
        raise TeacherError(
            f"cannot resolve `best({', '.join(ref.candidates)} by {key})`: eval `{key}` was never recorded for "
            f"{lacking} (candidates: {names})"
            f"\nhelp: make sure domain `{ref.domain}` defines `eval {ref.eval}` and every candidate has finished; "
            f"scores are read from {RunDir(run_dir).evals_jsonl}"
        )
    return max(ref.candidates, key=lambda c: (scores[c], -ref.candidates.index(c)))


def describe_teachers(stage: Stage, run_dir: Path | str) -> str:
    """``stage``'s teachers as chosen now, one ``route = teacher`` per route; a ``best(...)`` route adds the
    eval and every candidate's score that chose it, e.g. ``math = side (best by math.gsm: side 0.62, sft
    0.41)``. Empty when the stage has no teachers.

    Raises:
        TeacherError: as :func:`resolve_teacher`.
    """
    rows = read_jsonl(RunDir(run_dir).evals_jsonl)
    parts = []
    for route_name, ref in sorted(stage.teachers.items()):
        chosen = resolve_teacher(ref, run_dir)
        if ref.kind == "best":
            scores = ", ".join(f"{c} {_final_score(rows, c, ref.domain, ref.eval):.4g}" for c in ref.candidates)
            parts.append(f"{route_name} = {chosen} (best by {ref.domain}.{ref.eval}: {scores})")
        else:
            parts.append(f"{route_name} = {chosen}")
    return "; ".join(parts)


def announce_teachers(rd: RunDir, stage: Stage, console: Any) -> None:
    """Print (on a rich ``console``) and record (state.json ``teachers``) the teachers a stage starts with and
    the scores that chose them; one that cannot be resolved is left to the stage, which reports it."""
    try:
        chosen = describe_teachers(stage, rd.root)
    except TeacherError:
        return
    if chosen:
        rd.update_stage(stage.name, teachers=chosen)
        console.print(f"[bold]{stage.name}[/]: teachers: {escape(chosen)}", highlight=False)


def check_teacher_order(plan: Plan, stage: Stage, teacher: str) -> None:
    """Check that ``teacher`` is ``base``, a named external checkpoint, an ancestor of ``stage``, or a branch
    that runs before it.

    Raises:
        TeacherError: the teacher is unknown, is the stage itself, or runs after it (it could not have
            finished, so it is neither an ancestor nor a finished branch).
    """
    if teacher == BASE or teacher in plan.checkpoints:
        return
    order = [s.name for s in plan.stages]
    if teacher not in order:
        raise TeacherError(
            f"teacher `{teacher}` of stage `{stage.name}` is not a stage of cascade `{plan.name}`"
            f"\nhelp: name `base` or one of: {', '.join(f'`{n}`' for n in order if n != stage.name)}"
        )
    if order.index(teacher) >= order.index(stage.name):
        raise TeacherError(
            f"teacher `{teacher}` of stage `{stage.name}` is not an ancestor of `{stage.name}` nor a finished branch: "
            f"it runs {'as' if teacher == stage.name else 'after'} `{stage.name}`"
            f"\nhelp: a teacher must be on `{stage.name}`'s parent chain, `base`, or a side branch that runs before it"
        )


def resolve_teachers(plan: Plan, stage: Stage, run_dir: Path | str) -> dict[str, str]:
    """Resolve every entry of ``stage.teachers`` (domain or ``default`` -> stage name or ``base``).

    Also checks that each resolved teacher runs before ``stage`` and is ``done`` in ``state.json``.

    Raises:
        TeacherError: see :func:`resolve_teacher` and :func:`check_teacher_order`, or a teacher that has not
            finished.
    """
    if not stage.teachers:
        raise TeacherError(
            f"distill stage `{stage.name}` has no teachers\nhelp: add `teachers {{ default = <stage> }}` to the stage"
        )
    state = RunDir(run_dir).read_state()["stages"]
    resolved = {}
    for domain, ref in sorted(stage.teachers.items()):
        name = resolve_teacher(ref, run_dir)
        check_teacher_order(plan, stage, name)
        status = state.get(name, {}).get("status", "pending")
        if name != BASE and name not in plan.checkpoints and status != "done":
            raise TeacherError(
                f"teacher `{name}` (for `{domain}`) of stage `{stage.name}` has not finished (status `{status}`)"
                f"\nhelp: run the cascade from the start (`cascadec run`), which runs `{name}` first"
            )
        resolved[domain] = name
    return resolved


def nothing_to_distil(stage: Stage, teachers: Mapping[str, str]) -> str | None:
    """Why a distill stage has nothing to learn (``DistillParams.self_taught``: every route resolved to the
    student's own start), or None. Trained anyway, it would move the student by rounding noise alone, which
    AdamW scales up to full-size steps (the quickstart's ``best(...)`` picking the student's start for both
    domains: bench/results/quickstart-precision-device.md)."""
    p = stage.params
    if not teachers or not isinstance(p, DistillParams) or not p.self_taught(stage.parent, teachers.values()):
        return None
    return f"nothing to distil: every teacher is `{stage.parent}`, the student's own start, so the student is kept"


def route(key: str | None, teachers: Mapping[str, str]) -> str:
    """The teacher of a row's domain, falling back to ``default`` (a field-routed row without a route is
    left out by the stage instead, :mod:`runtime.routing`).

    Raises:
        TeacherError: the key has no teacher and there is no ``default``.
    """
    if key is not None and key in teachers:
        return teachers[key]
    if DEFAULT in teachers:
        return teachers[DEFAULT]
    shown = f"`{key}`" if key is not None else "(absent)"
    raise TeacherError(
        f"domain {shown} has no teacher and no `default` teacher is given"
        f"\nhelp: add `{key} = <stage>` or `default = <stage>` to the `teachers` block"
    )


def recorded_teacher_scores(teachers: Mapping[str, str], run_dir: Path | str) -> dict[str, dict[str, float]]:
    """Each teacher domain's recorded final scores: ``{teacher domain: {"domain.eval": score}}``.

    This is the ``teacher_scores`` argument of :func:`runtime.stop.should_stop`; the ``default`` entry is
    keyed ``"default"``. A teacher's score is the one recorded at its last eval point (``base``: the
    base-model evals).
    """
    rows = read_jsonl(RunDir(run_dir).evals_jsonl)
    out: dict[str, dict[str, float]] = {}
    for domain, name in teachers.items():
        keys = {(r.get("domain"), r.get("eval")) for r in rows if r.get("stage") == name}
        out[domain] = {
            f"{d}.{e}": score
            for d, e in sorted(keys, key=str)
            if (score := _final_score(rows, name, d, e)) is not None
        }
    return out


def _special_tokens(tok: Any) -> dict[str, Any]:
    # pad is left out: loaders often set it to eos at run time, and padding is never scored
    named = {k: getattr(tok, k, None) for k in ("bos_token", "eos_token", "unk_token")}
    named["additional"] = sorted(str(t) for t in (getattr(tok, "all_special_tokens", None) or [])
                                 if str(t) != str(getattr(tok, "pad_token", None)))
    return named


def check_tokenizers(student_tok: Any, teacher_tok: Any, student_name: str, teacher_name: str) -> None:
    """Check that teacher and student tokenize identically (same vocabulary ids and special tokens).

    The tokenizers are compared, not the models' embedding matrices: a model whose embedding is padded to
    a multiple of 64 or 128 rows has extra ids no tokenizer emits, which is harmless (torchtune #2119),
    while two different tokenizers of equal size would give meaningless teacher log-probs (TRL #4562).

    Raises:
        TeacherError: naming both models and the first differences found.
    """
    sv, tv = student_tok.get_vocab(), teacher_tok.get_vocab()
    problems = []
    if sv != tv:
        differ = sorted(t for t in set(sv) | set(tv) if sv.get(t) != tv.get(t))
        shown = ", ".join(f"`{t}` ({sv.get(t, 'absent')} vs {tv.get(t, 'absent')})" for t in differ[:3])
        problems.append(f"vocabularies differ ({len(sv)} vs {len(tv)} tokens, {len(differ)} ids differ, e.g. {shown})")
    ss, ts = _special_tokens(student_tok), _special_tokens(teacher_tok)
    for key in ss:
        if ss[key] != ts[key]:
            problems.append(f"special token `{key}` differs ({ss[key]!r} vs {ts[key]!r})")
    if problems:
        raise TeacherError(
            f"teacher `{teacher_name}` and student `{student_name}` use different tokenizers: " + "; ".join(problems)
            + "\nhelp: on-policy distillation scores the student's token ids with the teacher, so both must share "
            "one tokenizer; pick a teacher checkpoint from the same cascade (same base model)"
        )


def check_embeddings(model: Any, tokenizer: Any, name: str) -> None:
    """Check that ``model`` has an output row for every token id of ``tokenizer`` (padding rows are fine).

    Raises:
        TeacherError: the model's vocabulary is smaller than the tokenizer's.
    """
    rows = model.get_output_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        raise TeacherError(
            f"model `{name}` has {rows} output rows but its tokenizer has {len(tokenizer)} tokens"
            "\nhelp: the checkpoint and tokenizer do not belong together; re-save the stage's final checkpoint"
        )
