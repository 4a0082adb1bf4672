"""How large a ``tiny(...)`` model is, counted from its config alone: no module is built, so a spec asking for
a hundred thousand layers or a million-wide model is refused in milliseconds rather than hanging lint while
transformers builds it (even on the meta device, building costs time and memory per module, and a storage of
``2**63`` entries overflows).

The bounds come from the largest real models: the deepest published LLMs have 96 (GPT-3 175B) to 126 (Llama
3.1 405B) layers, and the largest open-weight one about 1.04 trillion parameters (Kimi K2). A tiny model is a
random-weight stand-in for tests; shaped like any real model it passes, beyond the largest one it is a typo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cascadec.contract.tiny_values import TinyProblem

#: Most layers a tiny model may have: the deepest published LLM (Llama 3.1 405B, 126 layers), rounded up.
MAX_TINY_LAYERS = 128
#: Most parameters a tiny model may have: about twice the largest open-weight LLM (Kimi K2, 1.04e12).
MAX_TINY_PARAMS = 2_000_000_000_000
#: Most experts of one kind (routed or shared) a tiny model's layer may have, where its model type's own default
#: is not larger: Qwen3-Next-80B-A3B routes among 512 experts a layer (transformers' `Qwen3NextConfig`), the most
#: of the open-weight LLMs (DeepSeek-V3 has 256, Kimi K2 384). Doge's default of 16,384 small experts stays valid.
MAX_TINY_EXPERTS = 512
#: Config attributes that count a layer's experts, each of which gets its own MLP.
EXPERT_ATTRS = frozenset({"num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts",
                          "n_shared_experts", "num_shared_experts", "moe_num_shared_experts"})
_WHY = ("a tiny model is a random-weight stand-in for tests, and the largest real LLMs have at most 126 layers "
        "(Llama 3.1 405B) and about 1e12 parameters (Kimi K2)")
# Config attributes the count reads, in the order a too-large count is blamed on the keys that set them.
_SIZE_ATTRS = ("num_hidden_layers", "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
               "head_dim", "num_key_value_heads", "num_local_experts", "num_experts")


def least_params(sizes: Mapping[str, Any]) -> int:
    """A lower bound of a decoder's parameter count from its config ``sizes`` (attribute -> value, None where
    unset): embeddings ``V*h`` (twice when untied), and per layer the attention projections
    ``h*d*(2*H + 2*KV)`` and an MLP of at least two ``h*I`` matrices (three when gated) per expert. Biases and
    norms are left out. ``d`` defaults to ``h // H``, ``KV`` to ``H``, ``I`` to ``4*h`` (gpt2's ``n_inner``).
    Python integers: no overflow for any value."""
    def size(attr: str, default: int) -> int:
        value = sizes.get(attr)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

    hidden, heads = size("hidden_size", 1), size("num_attention_heads", 1)
    kv, width = size("num_key_value_heads", heads), size("head_dim", max(hidden // heads, 1))
    inner = size("intermediate_size", 4 * hidden)
    experts = max(size("num_local_experts", 1), size("num_experts", 1))
    embeddings = size("vocab_size", 1) * hidden * (1 if sizes.get("tie_word_embeddings", True) else 2)
    layer = hidden * width * (2 * heads + 2 * kv) + 2 * hidden * inner * experts
    return embeddings + size("num_hidden_layers", 1) * layer


def layers_problem(key: str, value: Any, example: Any) -> TinyProblem | None:
    """``key = value`` setting more than :data:`MAX_TINY_LAYERS` layers (``key`` is the class's name for
    ``num_hidden_layers``), checked before any config is built: some config classes (qwen2, gemma2) list a
    type per layer, so a billion layers would hang the config itself."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= MAX_TINY_LAYERS:
        return None
    return _problem(key, value, f"more than {MAX_TINY_LAYERS} layers", example)


def experts_problem(attr: str, key: str, value: Any, default: Any, example: Any) -> TinyProblem | None:
    """``key = value`` (``key`` setting the config attribute ``attr``) giving a layer more experts than
    :data:`MAX_TINY_EXPERTS` or the model type's own ``default``, whichever is larger. Each expert is built as
    its own MLP, so a hundred thousand of them stall lint's build while the parameter bound, which counts the
    small tiny MLPs, still holds."""
    if attr not in EXPERT_ATTRS or isinstance(value, bool) or not isinstance(value, int):
        return None
    bound = max(MAX_TINY_EXPERTS, default if isinstance(default, int) and not isinstance(default, bool) else 0)
    if value <= bound:
        return None
    return _problem(key, value, f"more than {bound} experts a layer", example,
                    "a tiny model is a random-weight stand-in for tests, and real MoE LLMs have at most 512 experts "
                    "a layer (Qwen3-Next; DeepSeek-V3 256)")


def size_problems(sizes: Mapping[str, Any], example: Callable[[str], Any],
                  written: Callable[[str], str | None]) -> list[TinyProblem]:
    """At least :data:`MAX_TINY_PARAMS` parameters (:func:`least_params` of a config's ``sizes``), at the keys
    to blame: ``written(attr)`` is the key of the spec that sets a config attribute (None if none does),
    ``example(attr)`` the value a tiny model has where the spec leaves it out. Keys are blamed, largest
    reduction first, until putting back their examples brings the count under the bound, so applying every
    hint passes."""
    sizes = dict(sizes)
    problems: list[TinyProblem] = []
    candidates = [a for a in _SIZE_ATTRS if written(a) is not None]
    count = least_params(sizes)
    while count > MAX_TINY_PARAMS and candidates:
        attr = min(candidates, key=lambda a: least_params({**sizes, a: example(a)}))
        candidates.remove(attr)
        problems.append(_problem(written(attr), sizes[attr], f"at least {count:.2e} parameters, more than "
                                 f"{MAX_TINY_PARAMS:.0e}", example(attr)))
        sizes[attr] = example(attr)
        count = least_params(sizes)
    return problems


def _problem(key: str | None, value: Any, what: str, example: Any, why: str = _WHY) -> TinyProblem:
    return TinyProblem("value", key, f"`{key} = {value}` makes a tiny model of {what}: {why}",
                       f"write e.g. `{key} = {example}`" + (" (or leave it out: it defaults to the tokenizer's)"
                                                            if key == "vocab_size" else "")
                       + "; to train a real model, write `model(\"org/name\")`")
