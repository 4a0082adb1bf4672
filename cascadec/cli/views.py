"""What the commands print besides diagnostics: the plan table, and reward-contract problems as diagnostics."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from cascadec.checks.memory import memory_lower_bound
from cascadec.checks.memory_plan import stage_estimate
from cascadec.contract.kinds import TRAIN_METRICS
from cascadec.memory_estimate import gpu_memory
from cascadec.codes import CODES
from cascadec.contract.plan import Condition, Plan, Server, Stage, TeacherRef
from cascadec.diagnostics import Diagnostic, Label, Severity, Span


def reward_contract_code(code: str = "CAS500") -> tuple[str, str, Severity]:
    """Code, name and severity of a runtime-backed lint finding (CAS5xx: checks that need the runtime)."""
    entry = CODES[code]
    return entry.code, entry.name, entry.severity


def problem_to_diagnostic(problem: Any, files: dict[str, str] | None = None) -> Diagnostic:
    """A `runtime.rewards.contracts.Problem` (domain, kind, message, hint, origin) as a `Diagnostic`
    whose span is the reward's (or its domain's) location in the spec. ``files`` maps a path as recorded in
    the plan (`cascadec.lower.display_path`) to the path the file was read from."""
    code, name, severity = reward_contract_code(getattr(problem, "code", "CAS500"))
    labels: tuple[Label, ...] = ()
    if problem.origin is not None:
        o = problem.origin
        span = Span((files or {}).get(o.path, o.path), o.line, o.column, o.end_line, o.end_column)
        labels = (Label(span, f"reward of domain `{problem.domain}`"),)
    message = f"reward `{problem.kind}` of domain `{problem.domain}` breaks its contract: {problem.message}" \
        if code == "CAS500" else f"domain `{problem.domain}` (reward `{problem.kind}`): {problem.message}"
    return Diagnostic(code, name, severity, message, labels, help=problem.hint)


def _format_teachers(teachers: dict[str, TeacherRef], served: dict[str, Server]) -> str:
    """One ``route=teacher`` line per route; a served teacher says where (``vllm 2 GPUs tp 2``, ``endpoint``)."""
    parts = []
    for route, ref in sorted(teachers.items()):
        if ref.kind == "stage":
            parts.append(f"{route}={ref.stage}")
        else:
            parts.append(f"{route}=best({', '.join(ref.candidates)} by {ref.domain}.{ref.eval})")
    for name, srv in served.items():
        gpus = f"{srv.nodes} node(s) of its own, {srv.gpus or 'all'}" if srv.nodes else str(srv.gpus)
        where = f"vllm {gpus} GPU(s) tp {srv.tensor_parallel}" if srv.kind == "vllm" else f"endpoint {srv.url}"
        parts.append(f"{name} served: {where}")
    return "\n".join(parts)


def _format_condition(c: Condition) -> str:
    if c.kind == "steps":
        return f"steps {c.op} {c.value:g}"
    metric = f"{TRAIN_METRICS}.{c.metric}" if c.kind == "metric" else f"{c.domain}.{c.eval}"
    if c.kind == "plateau":
        return f"plateau({metric}, patience={c.patience}, min_delta={c.min_delta:g})"
    if c.relative_to:
        scale = "" if c.value == 1 else f"{c.value:g} × "
        return f"{metric} {c.op} {scale}teacher({c.relative_to}).{c.eval}"
    return f"{metric} {c.op} {c.value:g}"


def _format_batch(stage: Stage) -> str:
    p = stage.params
    if p.group_size == 1:
        return str(p.rows_per_step)
    return f"{p.rows_per_step} × {p.group_size} ({p.sequences_per_step})"


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f}"


def _memory_cells(plan: Plan, stage: Stage) -> list[str]:
    """GiB per GPU: model states, activations (with checkpointing in brackets), KV cache, frozen models, total
    (`cascadec.checks.memory_plan`; `!` marks a total above the GPU's memory). With an unknown model shape only
    the lower bound of `cascadec.checks.memory` is shown; blank when even the parameter count is unknown."""
    est = stage_estimate(plan.base, stage)
    if est is None:
        need = memory_lower_bound(plan.base, stage)
        return ["", "", "", "", "" if need is None else f"≥ {_gib(need)}"]
    limit = gpu_memory(stage.resources.gpu, stage.resources.memory_per_gpu_bytes)
    over = " !" if limit is not None and est.total > limit else ""
    return [_gib(est.weights + est.grads + est.optimizer),
            f"{_gib(est.activations)} ({_gib(est.activations_ckpt)})", _gib(est.kv_cache), _gib(est.frozen),
            _gib(est.total) + over]


def plan_table(plan: Plan) -> Table:
    """The rich table `cascadec plan` prints: one row per stage, in run order."""
    table = Table(title=f"cascade {plan.name!r}: {len(plan.stages)} stages from {plan.base.name}")
    memory = ("states GiB", "act. (ckpt)", "KV cache", "frozen", "GiB/GPU")
    for column in ("stage", "kind", "parent", "domains", "steps", "batch", *memory, "teachers", "until", "hash"):
        table.add_column(column, justify="right" if column in ("steps", *memory) else "left")
    for s in plan.stages:
        domains = "\n".join(f"{d} {w:.3g}" for d, w in s.domains.items())
        table.add_row(
            s.name + (" (branch)" if s.branch else ""),
            s.kind,
            s.parent,
            domains,
            s.params.steps_label(),
            _format_batch(s),
            *_memory_cells(plan, s),
            _format_teachers(s.teachers, s.resources.teacher_servers),
            "\nor ".join(_format_condition(c) for c in s.until),
            s.hash[:8],
        )
    return table


def natural_width(console: Console, table: Table) -> int:
    """Columns ``table`` needs to print without wrapping any cell."""
    unbounded = console.options.update_width(sys.maxsize)
    return console.measure(table, options=unbounded).maximum
