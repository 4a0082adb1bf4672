"""The decode forward pass of the fast rollout engine: a Llama-family model over a static KV cache.

:class:`StaticDecoder` runs the policy's own modules (embedding, layers, final norm, head) for ``S`` new
tokens per row against one ``[B, kv_heads, T_max, head_dim]`` key and value tensor per layer, written in
place at slot indices held in a tensor, so one step has no Python-side shape or position and can be captured
in a CUDA graph (``runtime.rollout.graph_step``).
"""

from __future__ import annotations

import torch
from torch import nn

from cascadec.contract.errors import UserError
from runtime.logprobs import unwrap_model

SUPPORTED_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral"})


class UnsupportedModelError(UserError, ValueError):
    """The policy's architecture is not one this engine implements (use the transformers engine)."""


def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` unless ``model`` is a Llama-family causal LM this engine runs.

    Supported: model types in :data:`SUPPORTED_MODEL_TYPES` with full (not sliding-window) attention, no
    logit soft-capping and the standard ``model.model.{embed_tokens, layers, norm, rotary_emb}`` layout.
    """
    inner = unwrap_model(model)
    cfg = inner.config
    if cfg.model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"the fast rollout engine supports {sorted(SUPPORTED_MODEL_TYPES)}, not `{cfg.model_type}`; "
            "help: set `engine = hf` in the stage's resources"
        )
    if "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
        raise UnsupportedModelError("the fast rollout engine does not implement sliding-window attention")
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "attn_logit_softcapping", None):
        raise UnsupportedModelError("the fast rollout engine does not implement logit soft-capping")
    base = getattr(inner, "model", None)
    for name in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(base, name):
            raise UnsupportedModelError(f"`{type(inner).__name__}.model` has no `{name}`; not a Llama-family layout")



def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class StaticDecoder:
    """A Llama-family forward pass over a static KV cache, built from the policy's own modules.

    ``forward(ids, positions, slots, real)`` runs ``S`` new tokens per row through every layer:
    ``ids``/``positions`` are ``[B, S]`` int64, ``slots`` ``[S]`` int64 cache indices (shared by all rows:
    prompts are left-padded), ``real`` ``[B, S]`` bool (false for padding, whose keys are never attended
    to). It returns the logits of the last position, ``[B, V]`` in the compute dtype.
    Attention (Vaswani et al. 2017, Eq. 1) with grouped key/value heads is computed with one batched
    matmul per layer over the whole cache, masked to the slots written so far.
    """

    def __init__(self, model: nn.Module, batch: int, max_len: int, dtype: torch.dtype, device: torch.device):
        check_supported(model)
        self.model = unwrap_model(model)
        cfg = self.model.config
        self.base = self.model.model
        self.head = self.model.get_output_embeddings()
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.batch, self.max_len, self.dtype, self.device = batch, max_len, dtype, device
        # One tensor per layer, not one [layers, ...] tensor: an in-place write into a view of a larger
        # input makes torch.compile copy the whole cache on every write (seen on an H200: 350 us per layer).
        shape = (batch, self.n_kv, max_len, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.base.layers]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.base.layers]
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.slot_index = torch.arange(max_len, device=device)

    def reset(self) -> None:
        """Forget every cached token (in place, so captured graphs stay valid)."""
        self.valid.zero_()

    def _attention(self, layer: nn.Module, idx: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   slots: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        batch, seq, _ = x.shape
        q = attn.q_proj(x).view(batch, seq, self.n_heads, self.head_dim)
        k = attn.k_proj(x).view(batch, seq, self.n_kv, self.head_dim)
        v = attn.v_proj(x).view(batch, seq, self.n_kv, self.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before the rotary embedding
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        self.keys[idx].index_copy_(2, slots, k.to(self.dtype))
        self.values[idx].index_copy_(2, slots, v.to(self.dtype))
        group = self.n_heads // self.n_kv
        # [B, H, S, d] -> [B, kv, group*S, d]: the query heads that share a key/value head become rows of
        # one matmul against that head's cache, so the cache is read once and never repeated per group.
        qg = q.reshape(batch, self.n_kv, group * seq, self.head_dim).to(self.dtype)
        scale = getattr(attn, "scaling", None) or self.head_dim ** -0.5
        scores = torch.matmul(qg, self.keys[idx].transpose(-1, -2)).float() * scale
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(self.dtype)
        out = torch.matmul(probs, self.values[idx])
        out = out.reshape(batch, self.n_heads, seq, self.head_dim).transpose(1, 2).reshape(batch, seq, -1)
        return attn.o_proj(out.to(x.dtype))

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                real: torch.Tensor) -> torch.Tensor:
        batch, seq = ids.shape
        self.valid.index_copy_(1, slots, real)
        # Slot j is visible from query i when it holds a real token at or before i; every query also
        # sees itself, so a padding row has one finite score instead of a NaN softmax.
        visible = self.slot_index[None, :] <= slots[:, None]                      # [S, T]
        own = self.slot_index[None, :] == slots[:, None]
        mask = (self.valid[:, None, :] & visible[None]) | own[None]              # [B, S, T]
        group = self.n_heads // self.n_kv
        mask = mask[:, None, None].expand(batch, 1, group, seq, self.max_len).reshape(
            batch, 1, group * seq, self.max_len)
        x = self.base.embed_tokens(ids)
        cos, sin = self.base.rotary_emb(x, positions)
        for idx, layer in enumerate(self.base.layers):
            x = x + self._attention(layer, idx, layer.input_layernorm(x), cos, sin, slots, mask)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        last = self.base.norm(x[:, -1])
        return self.head(last)


    def copy_rows(self, source: StaticDecoder, rows: torch.Tensor) -> None:
        """Take ``source``'s cache rows ``rows`` (``[self.batch]`` int64), every slot (batch compaction)."""
        for mine, theirs in zip(self.keys + self.values, source.keys + source.values):
            mine.copy_(theirs.index_select(0, rows))
        self.valid.copy_(source.valid.index_select(0, rows))
