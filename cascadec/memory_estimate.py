"""A per-GPU memory estimate of one stage: model states, activations, the log-prob chunk, the rollout KV cache
and frozen models, against the GPU's memory (`cascadec plan`, CAS410).

Every term is bytes on one GPU, for a decoder-only transformer with GQA attention and a SwiGLU MLP (Llama,
Qwen, SmolLM2 families):

- weights, gradients, optimizer: mixed-precision AdamW model states sharded by the strategy (ZeRO paper,
  Rajbhandari et al. 2020, §3.1: ``2Ψ + 2Ψ + 12Ψ`` bytes in bf16, ``4Ψ + 4Ψ + 8Ψ`` in fp32);
- activations of one micro-batch kept for backward, after Korthikanti et al. 2022 ("Reducing Activation
  Recomputation in Large Transformer Models", §4.1, Eq. 2) with flash attention (no ``s^2`` score matrix)
  and adapted to GQA/SwiGLU: per token and layer ``w (6h + 2 kv + 4 I) + 8h`` bytes (``w`` the activation
  width, ``kv = kv_heads * head_dim``, ``I`` the MLP width, ``8h`` the fp32 RMSNorm inputs); with
  activation checkpointing only each layer's input (``w h`` per token and layer) plus one layer's full set
  (recomputed in backward) remain;
- the log-prob chunk: ``runtime.logprobs`` applies the head to 1024 positions at a time, ``1024 * V * 4``
  bytes of fp32 logits, about three times that alive in backward;
- the rollout KV cache: ``2 * layers * kv * w`` bytes per token for every sequence a GPU generates at once
  (its share of ``prompts_per_step * rollouts_per_prompt``, each ``max_prompt + max_response`` long);
- frozen models (reference, teachers): ``w Ψ`` each, whole on every GPU.

It is an estimate: allocator fragmentation, CUDA context (~0.5 GiB), NCCL buffers and the rollout engine's
own workspace come on top, and a smaller batch than the maximum lengths suggest needs less.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

GIB = 1024**3
MIB = 1024**2
LOGPROB_CHUNK = 1024

# Total memory per card as `nvidia-smi` reports it (MiB), for `resources { gpu = h100 }`.
GPU_MEMORY_MIB = {
    "h100": 81_559, "h100-pcie": 81_559, "h200": 143_771, "a100": 81_920, "a100-40gb": 40_960,
    "l40s": 46_068, "l40": 46_068, "a10g": 23_028, "l4": 23_034, "rtx4090": 24_564, "a6000": 49_140,
}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: parameter count and block dimensions."""

    params: int
    hidden: int
    layers: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int


# Public configs (config.json of each release) of models the specs name; others are read from a local
# checkpoint's config.json or a tiny(...) config, or are unknown (then only model states are estimated).
KNOWN_SHAPES = {
    "smollm2-135m-instruct": ModelShape(134_515_008, 576, 30, 3, 64, 1536, 49_152),
    "qwen/qwen3-8b-base": ModelShape(8_190_735_360, 4096, 36, 8, 128, 12_288, 151_936),
    "qwen/qwen3-8b": ModelShape(8_190_735_360, 4096, 36, 8, 128, 12_288, 151_936),
    "qwen/qwen3-14b-base": ModelShape(14_768_307_200, 5120, 40, 8, 128, 17_408, 151_936),
    "qwen/qwen2.5-0.5b": ModelShape(494_032_768, 896, 24, 2, 64, 4864, 151_936),
    "meta-llama/llama-3.1-8b-instruct": ModelShape(8_030_261_248, 4096, 32, 8, 128, 14_336, 128_256),
}


def shape_from_config(config: dict, params: int | None = None) -> ModelShape | None:
    """A shape from a transformers config dict (``config.json`` or ``tiny(...)`` overrides); None when a
    dimension is missing or not a positive number (no model has it: the runtime refuses such a ``tiny(...)``).
    ``params`` defaults to the count implied by the dimensions (untied head)."""
    try:
        h, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv = int(config.get("num_key_value_heads") or heads)
        inter, vocab = int(config["intermediate_size"]), int(config["vocab_size"])
        if min(h, layers, heads, kv, inter, vocab) <= 0:
            return None
        head_dim = int(config.get("head_dim") or h // heads)
    except (KeyError, TypeError, ValueError):
        return None
    if head_dim <= 0:
        return None
    if params is None:
        per_layer = h * heads * head_dim * 2 + 2 * h * kv * head_dim + 3 * h * inter + 2 * h
        params = layers * per_layer + 2 * vocab * h + h
    return ModelShape(params, h, layers, kv, head_dim, inter, vocab)


@dataclass(frozen=True)
class Workload:
    """One stage on one GPU: tokens per micro-batch, sequences generated at once and their length (0 for
    SFT), data-parallel size, strategy, activation width and precision, checkpointing, frozen models."""

    tokens_per_micro_batch: int
    rollout_sequences: int
    rollout_len: int
    data_parallel: int
    strategy: str
    fp32: bool
    checkpointing: bool
    frozen_models: int


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of each term (see the module docstring)."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    activations_ckpt: float
    logprob_chunk: float
    kv_cache: float
    frozen: float
    checkpointing: bool

    @property
    def total(self) -> float:
        act = self.activations_ckpt if self.checkpointing else self.activations
        return self.weights + self.grads + self.optimizer + act + self.logprob_chunk + self.kv_cache + self.frozen

    def as_dict(self) -> dict[str, float]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "checkpointing"},
                "total": self.total}


_SHARDS = {"ddp": (1, 1, 1), "zero1": (1, 1, 0), "zero2": (1, 0, 0), "zero3": (0, 0, 0), "fsdp2": (0, 0, 0)}


def estimate(shape: ModelShape, work: Workload) -> MemoryEstimate:
    """The estimate of ``work`` on a model of ``shape`` (bytes per GPU; see the module docstring)."""
    w = 4 if work.fp32 else 2
    n = max(work.data_parallel, 1)
    shard = [1 if whole else n for whole in _SHARDS[work.strategy]]
    p = shape.params
    kv = shape.kv_heads * shape.head_dim
    per_token_layer = w * (6 * shape.hidden + 2 * kv + 4 * shape.intermediate) + 8 * shape.hidden
    tokens = work.tokens_per_micro_batch
    full = tokens * shape.layers * per_token_layer
    ckpt = tokens * shape.layers * w * shape.hidden + tokens * per_token_layer
    return MemoryEstimate(
        weights=w * p / shard[0], grads=w * p / shard[1], optimizer=(8 if w == 4 else 12) * p / shard[2],
        activations=full, activations_ckpt=ckpt,
        logprob_chunk=3 * min(LOGPROB_CHUNK, max(tokens, 1)) * shape.vocab * 4,
        kv_cache=work.rollout_sequences * work.rollout_len * 2 * shape.layers * kv * w,
        frozen=work.frozen_models * w * p, checkpointing=work.checkpointing,
    )


def gpu_memory(gpu: str | None, override: int | None) -> int | None:
    """The memory of one GPU in bytes: ``override`` (``memory_per_gpu``) if set, else the card's from
    :data:`GPU_MEMORY_MIB`, else None."""
    if override is not None:
        return override
    return GPU_MEMORY_MIB[gpu] * MIB if gpu else None
