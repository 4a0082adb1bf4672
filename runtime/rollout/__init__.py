"""Rollout engines behind one interface (``base.RolloutEngine``); ``build_engine`` picks the stage's.

| engine | when |
|---|---|
| ``fast.FastRolloutEngine`` (static KV cache, CUDA-graph decode) | ``engine = hf`` on CUDA, a Llama-family policy, strategy ``ddp``, ``zero1``, ``zero2`` or ``fsdp2`` (under FSDP2 every rank decodes from a whole bf16 copy gathered after each step) |
| ``hf.HFRolloutEngine`` (transformers ``generate``) | every other ``engine = hf`` case: CPU, other architectures, ZeRO-3; under bf16 mixed precision it decodes from its own bf16 copy (except FSDP2/ZeRO-3 shards) |
| ``vllm.VLLMRolloutEngine`` (colocated vLLM) | ``engine = vllm`` |
| ``server.ServerRolloutEngine`` (a vLLM server over HTTP) | ``rollout = vllm(gpus = N)`` or ``rollout = endpoint(...)`` |

All three draw the same distribution and return the same ``RolloutBatch``; ``fast`` is an implementation of
``hf`` for speed (docs/gpu.md), so the plan does not name it. ``CASCADEC_FAST_ROLLOUT=0`` in the
environment keeps transformers ``generate`` on CUDA too (to rule the fast engine out when debugging).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from cascadec.contract.kinds import ENGINES, load
from cascadec.contract.serving import max_model_len
from runtime.logprobs import unwrap_model
from runtime.rollout.base import RolloutBatch, RolloutEngine

if TYPE_CHECKING:
    from runtime.context import StageContext

__all__ = ["RolloutBatch", "RolloutEngine", "build_engine", "hf_engine", "select_engine", "server_engine",
           "vllm_engine"]

# Rows per generate call: bounds the KV cache (rows x (prompt + response) x layers x 2 x hidden).
DEFAULT_BATCH_ROWS = 64
FAST_STRATEGIES = ("ddp", "zero1", "zero2", "fsdp2")
FAST_ENV = "CASCADEC_FAST_ROLLOUT"


def select_engine(ctx: StageContext) -> str:
    """``"fast"``, ``"hf"`` or ``"vllm"`` for ``ctx`` (see the module table).

    ZeRO-3 stays on transformers ``generate``: the fast engine gathers FSDP2's ``DTensor`` shards, and
    DeepSpeed gathers its partitioned parameters through another API (``deepspeed.zero.GatheredParameters``),
    which is not implemented here because DeepSpeed is not on the lent GPU image, so it could not be tested.
    """
    if ctx.stage.resources.engine == "vllm":
        return "vllm"
    if (ctx.device.type != "cuda" or ctx.stage.resources.strategy not in FAST_STRATEGIES
            or os.environ.get(FAST_ENV, "1") == "0"):
        return "hf"
    from runtime.rollout.fast import UnsupportedModelError, check_supported

    try:
        check_supported(ctx.policy)
    except UnsupportedModelError:
        return "hf"
    return "fast"


def build_engine(ctx: StageContext) -> RolloutEngine:
    """The rollout engine of ``ctx``'s stage (its registry entry's factory,
    `cascadec.contract.kinds.ENGINES`), for its policy and tokenizer.

    Raises:
        runtime.rollout.vllm.VLLMUnavailableError: ``engine = vllm`` without vLLM installed.
    """
    return load(ENGINES[ctx.stage.resources.rollout_engine()].impl)(ctx)


def hf_engine(ctx: StageContext) -> RolloutEngine:
    """``engine = hf``: the fast engine where it applies (:func:`select_engine`), else transformers
    ``generate``; prompts are cut to the stage's ``max_prompt`` tokens (kept from the end) where the stage
    kind has one."""
    max_prompt = getattr(ctx.stage.params, "max_prompt", None)
    if select_engine(ctx) == "fast":
        from runtime.rollout.fast import FastRolloutEngine

        return FastRolloutEngine(ctx.policy, ctx.tokenizer, device=ctx.device, dtype=ctx.dtype,
                                 max_prompt=max_prompt)
    from runtime.rollout.hf import HFRolloutEngine

    # A decode copy in the stage dtype (bf16 under mixed precision) where the weights are whole on this rank;
    # FSDP2 and ZeRO-3 shards decode under the forward's autocast instead.
    whole = ctx.stage.resources.strategy not in ("fsdp2", "zero3")
    return HFRolloutEngine(ctx.policy, ctx.tokenizer, max_prompt=max_prompt, batch_rows=DEFAULT_BATCH_ROWS,
                           dtype=ctx.dtype if whole else None)


def vllm_engine(ctx: StageContext) -> RolloutEngine:
    """``engine = vllm``: colocated vLLM in the stage dtype, with the device share of ``resources { rollout =
    vllm(memory = ...) }`` (0.3 when unset)."""
    from runtime.rollout.vllm import VLLMRolloutEngine

    dtype = "bfloat16" if ctx.dtype == torch.bfloat16 else "auto"
    rollout = ctx.stage.resources.rollout
    return VLLMRolloutEngine(ctx.policy, ctx.tokenizer, dtype=dtype, max_model_len=max_model_len(ctx.plan, ctx.stage),
                             gpu_memory_utilization=rollout.memory if rollout else 0.3,
                             seed=ctx.stage.seed, max_prompt=getattr(ctx.stage.params, "max_prompt", None))


def server_engine(ctx: StageContext) -> RolloutEngine:
    """``rollout = vllm(gpus = N)`` or ``endpoint(...)``: a vLLM server that reloads the policy's weights from
    ``stages/<stage>/rollout_weights/`` (written in the stage dtype) after each step. A server per node
    (``vllm``) is reloaded by each node's first rank; an endpoint, or a server on nodes of its own (one for all
    training nodes), by the first rank of all.

    Raises:
        runtime.serving.client.ServerError: the server is unreachable or unfit (`runtime.rollout.server`).
    """
    from runtime.loop import save_final
    from runtime.rollout.server import Needs, Publisher, ServerRolloutEngine
    from runtime.serving.servers import rollout_endpoint, weights_dir

    stage, acc = ctx.stage, ctx.accelerator
    server, ep = stage.resources.rollout_server(), rollout_endpoint(stage)
    assert server is not None and ep is not None
    dest = weights_dir(ctx.rundir, stage)
    publisher = Publisher(save=lambda model: save_final(ctx, dest, model=model, dtype=ctx.dtype),
                          reloads=acc.is_local_main_process if server.kind == "vllm" and not server.nodes
                          else acc.is_main_process,
                          barrier=acc.wait_for_everyone)
    p = stage.params
    needs = Needs(processed_logprobs=getattr(p, "temperature", 1.0) != 1.0 or getattr(p, "top_p", 1.0) < 1.0
                  or getattr(p, "top_k", 0) > 0, max_len=max_model_len(ctx.plan, stage),
                  tied=bool(getattr(unwrap_model(ctx.policy).config, "tie_word_embeddings", False)))
    return ServerRolloutEngine(ep, ctx.tokenizer, ctx.policy, publisher, needs,
                               max_prompt=getattr(p, "max_prompt", None), owner=f"the policy of stage `{stage.name}`")
