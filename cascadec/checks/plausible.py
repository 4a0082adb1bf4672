"""CAS415: values in range but almost surely typos (a learning rate of `3e5` for `3e-5`, a million steps,
a sampling temperature of 20, a thousand rollouts per prompt, a million sequences in one step). Warnings: a
deliberate value stays possible."""

from __future__ import annotations

from collections.abc import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model import StageIn

# the thresholds of the warning; docs/diagnostics.md (CAS415) states them
MAX_LR = 1e-2
MAX_STEPS = 1_000_000
MAX_TEMPERATURE = 2.0
# 16 times the largest group of the papers (DeepSeekMath's GRPO samples 64 rollouts per prompt), and about 500
# times a Nemotron-Cascade step (128 prompts × 16 rollouts); the runtime holds every sequence of a step (ids,
# log-probs, rewards) in memory at once
MAX_GROUP = 1024
MAX_SEQUENCES = 1_000_000


def _shown(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _warn(ctx: CheckContext, loc: tuple, fallback, what: str, value: float, limit: float, hint: str) -> Diagnostic:
    return make("CAS415", f"{what} is {_shown(value)}, above {_shown(limit)}", ctx.span_of(loc, fallback),
                label="valid, but almost surely a typo", help=hint)


def check_plausible(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS415 for a peak learning rate above 1e-2, more than a million steps, a temperature above 2, a group
    above `MAX_GROUP` rollouts, a step above `MAX_SEQUENCES` sequences."""
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        at, span = ("stages", i, "params"), node.name.span
        lr, steps = st.params.optim.lr.peak, st.params.steps
        if lr > MAX_LR:
            yield _warn(ctx, at + ("optim", "lr", "peak"), span, f"stage `{st.name}`'s learning rate", lr, MAX_LR,
                        "fine-tuning uses 1e-7 to 1e-4: check the exponent's sign (`3e-5`, not `3e5`)")
        if steps is not None and steps > MAX_STEPS:
            yield _warn(ctx, at + ("steps",), span, f"stage `{st.name}`'s `steps`", steps, MAX_STEPS,
                        "check the number of zeros; stop earlier with `until` if the stage may converge")
        temperature = getattr(st.params, "temperature", None)
        if temperature is not None and temperature > MAX_TEMPERATURE:
            yield _warn(ctx, at + ("temperature",), span, f"stage `{st.name}`'s rollout temperature", temperature,
                        MAX_TEMPERATURE, "sampling above 2 is close to uniform noise; 0.6 to 1.2 is usual")
        yield from _batch(ctx, i, st, span)
    for d in ctx.view.domains:
        for j, ev in enumerate(ctx.spec.domains[d.name.name].evals):
            if ev.temperature > MAX_TEMPERATURE:
                yield _warn(ctx, ("domains", d.name.name, "evals", j, "temperature"), d.name.span,
                            f"eval `{d.name.name}.{ev.name}`'s temperature", ev.temperature, MAX_TEMPERATURE,
                            "sampling above 2 is close to uniform noise; 0 to 1 is usual for evals")


def _batch(ctx: CheckContext, i: int, st: StageIn, span: Span) -> Iterator[Diagnostic]:
    """A group or a step far above any published recipe (`MAX_GROUP`, `MAX_SEQUENCES`)."""
    p, at = st.params, ("stages", i, "params")
    if p.group_size > MAX_GROUP:
        yield _warn(ctx, at + ("rollouts_per_prompt",), span, f"stage `{st.name}`'s `rollouts_per_prompt`",
                    p.group_size, MAX_GROUP, "GRPO recipes sample 4 to 64 rollouts per prompt; check the number")
    elif p.sequences_per_step > MAX_SEQUENCES:
        yield _warn(ctx, at + (p.batch_key,), span, f"stage `{st.name}`'s sequences per step",
                    p.sequences_per_step, MAX_SEQUENCES,
                    f"recipes train on a few thousand sequences a step; lower `{p.batch_key}`")
