"""The full per-GPU memory estimate of each stage (`cascadec.memory_estimate`) for `cascadec plan`, and CAS410
when it exceeds the GPU's memory (`resources { gpu = h100 }`, or `memory_per_gpu`, which overrides it).

The model's shape comes from the table of known models, a packaged model, a `tiny(...)` config, or a local
checkpoint's `config.json`; for other models only CAS409's lower bound applies.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.memory import frozen_models, model_state_bytes, parameter_count
from cascadec.codes import make
from cascadec.contract.plan import ModelRef, Stage
from cascadec.contract.tiny import BYTE_VOCAB_SIZE, TINY_DEFAULTS
from cascadec.diagnostics import Diagnostic
from cascadec.memory_estimate import KNOWN_SHAPES, MemoryEstimate, ModelShape, Workload, estimate, gpu_memory, \
    shape_from_config


def model_shape(base: ModelRef) -> ModelShape | None:
    """The base model's shape, or None when it cannot be known without loading it."""
    if base.kind == "tiny":
        return shape_from_config(_tiny_config(base))
    known = KNOWN_SHAPES.get(base.name.lower().rstrip("/"))
    if known is not None or base.kind != "path":
        return known
    config = Path(base.name) / "config.json"
    try:
        return shape_from_config(json.loads(config.read_text(encoding="utf-8")), parameter_count("path", base.name))
    except (OSError, ValueError):
        return None


def _tiny_config(base: ModelRef) -> dict:
    """The config a ``tiny(...)`` model is built with: its keys over the runtime's defaults, and the vocabulary
    of its tokenizer where that is known without loading it (the byte-level default, or a known model's)."""
    tokenizer = base.tokenizer or "bytes"
    known = KNOWN_SHAPES.get(tokenizer.lower().rstrip("/"))
    vocab = BYTE_VOCAB_SIZE if tokenizer == "bytes" else known.vocab if known else None
    return {**TINY_DEFAULTS, **({"vocab_size": vocab} if vocab else {}), **base.config}


# rows the transformers engine generates at once (runtime.rollout.DEFAULT_BATCH_ROWS; a test keeps them
# equal) and the device share colocated vLLM reserves (runtime.rollout.vllm's gpu_memory_utilization)
HF_BATCH_ROWS = 64
VLLM_SHARE = 0.3


def row_tokens(st: Stage) -> int:
    """The most tokens one row of stage ``st`` holds: `max_seq` (SFT), else `max_prompt + max_response`."""
    p = st.params
    return getattr(p, "max_seq", None) or getattr(p, "max_prompt", 0) + getattr(p, "max_response", 0)


def workload(st: Stage) -> Workload:
    """What one GPU of stage ``st`` holds at once (see `cascadec.memory_estimate.Workload`)."""
    p, r = st.params, st.resources
    seq = row_tokens(st)
    budget = getattr(p, "max_tokens_per_gpu", None)
    tokens = budget if budget else p.micro_batch * seq
    # the policy generates: the engine's KV cache, on the training GPUs unless a rollout server holds it
    samples = hasattr(p, "rollouts_per_prompt") and r.rollout_server() is None
    rollouts = math.ceil(p.rows_per_step / st.data_parallel_size) * p.group_size if samples else 0
    if r.engine == "hf":
        rollouts = min(rollouts, HF_BATCH_ROWS)
    return Workload(tokens_per_micro_batch=tokens, rollout_sequences=rollouts, rollout_len=seq if samples else 0,
                    data_parallel=st.data_parallel_size, strategy=r.strategy, fp32=r.precision == "fp32",
                    checkpointing=r.gradient_checkpointing, frozen_models=frozen_models(st))


def stage_estimate(base: ModelRef, st: Stage) -> MemoryEstimate | None:
    """The estimate of ``st`` on one GPU, None when the model's shape is unknown. vLLM pages its KV cache
    inside the share of the GPU it reserves, so with a known GPU that share caps the KV term."""
    shape = model_shape(base)
    if shape is None:
        return None
    est = estimate(shape, workload(st))
    limit = gpu_memory(st.resources.gpu, st.resources.memory_per_gpu_bytes)
    if st.resources.engine == "vllm" and limit is not None:
        share = st.resources.rollout.memory if st.resources.rollout else VLLM_SHARE
        est = replace(est, kv_cache=min(est.kv_cache, share * limit))
    return est


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_memory_plan(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        r = st.resources
        limit = gpu_memory(r.gpu, r.memory_per_gpu_bytes)
        est = stage_estimate(ctx.spec.base, st)
        if limit is None or est is None or est.total <= limit:
            continue
        params = parameter_count(ctx.spec.base.kind, ctx.spec.base.name)
        if params is not None and r.memory_per_gpu_bytes is not None and \
                sum(model_state_bytes(params, st, frozen_models(st))) > limit:
            continue  # CAS409 already says the model states alone do not fit
        act = est.activations_ckpt if est.checkpointing else est.activations
        where = "`memory_per_gpu`" if r.memory_per_gpu_bytes is not None else f"a `{r.gpu}`'s memory"
        notes = (f"model states {_gib(est.weights + est.grads + est.optimizer)}, activations {_gib(act)}"
                 f" ({'with' if est.checkpointing else 'without'} checkpointing), log-prob chunk "
                 f"{_gib(est.logprob_chunk)}, rollout KV cache {_gib(est.kv_cache)}, frozen models {_gib(est.frozen)}",)
        hint = ("turn on `gradient_checkpointing`, lower `micro_batch` or `max_tokens_per_gpu`, shard with "
                "`strategy = zero3` or `fsdp2`, or add GPUs")
        yield make("CAS410", f"stage `{st.name}` is estimated at {_gib(est.total)} per GPU, more than {where} "
                   f"({_gib(limit)})", node.name.span, label="may not fit", notes=notes, help=hint)
