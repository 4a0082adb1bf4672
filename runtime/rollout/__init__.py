"""Rollout engines behind one interface (``base.RolloutEngine``); ``build_engine`` picks the plan's."""

from __future__ import annotations

from typing import Any

from runtime.rollout.base import RolloutBatch, RolloutEngine

__all__ = ["RolloutBatch", "RolloutEngine", "build_engine"]

# Rows per generate call: bounds the KV cache (rows x (prompt + response) x layers x 2 x hidden).
DEFAULT_BATCH_ROWS = 64


class EngineError(RuntimeError):
    """The plan asks for a rollout engine this installation cannot provide."""


def build_engine(ctx: Any) -> RolloutEngine:
    """The rollout engine of ``ctx.stage.resources.engine`` for the stage's policy and tokenizer.

    ``hf`` is transformers ``generate`` (:class:`runtime.rollout.hf.HFRolloutEngine`); prompts are cut to
    the stage's ``max_prompt`` tokens (kept from the end) where the stage kind has one.

    Raises:
        EngineError: for ``vllm``, which this runtime does not ship.
    """
    kind = ctx.stage.resources.engine
    if kind != "hf":
        raise EngineError(
            f"stage `{ctx.stage.name}` asks for rollout engine `{kind}`, which this runtime does not provide\n"
            "help: set `engine = hf` in the stage's resources"
        )
    from runtime.rollout.hf import HFRolloutEngine

    return HFRolloutEngine(
        ctx.policy, ctx.tokenizer, max_prompt=getattr(ctx.stage.params, "max_prompt", None),
        batch_rows=DEFAULT_BATCH_ROWS,
    )
