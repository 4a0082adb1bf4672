"""``tiny(NAME, key = value, ...)`` models: their defaults and the check of their config, shared by the
compiler (CAS329 at `cascadec lint` and `cascadec run`, located at the keyword) and the runtime
(``runtime.models.check_tiny``, before a tiny model is built).

The check needs transformers' config classes, imported on the first call.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from cascadec.contract.suggest import suggest

#: What a tiny model has where its ``tiny(...)`` call says nothing (the vocabulary comes from its tokenizer).
TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}

#: The default tokenizer's size (``runtime.models``' byte-level tokenizer: 256 bytes and 3 ChatML specials).
BYTE_VOCAB_SIZE = 259
#: What a tiny model's config takes from that tokenizer (a test keeps both equal).
BYTE_TOKENS: dict[str, int] = {"vocab_size": BYTE_VOCAB_SIZE, "pad_token_id": 0, "bos_token_id": 1,
                               "eos_token_id": 2}
#: Parameters up to which lint builds a tiny model and runs a first forward (larger ones are built on the
#: meta device only: no weights, no forward).
FORWARD_CHECK_PARAMS = 50_000_000

HINT = "the keys are the attributes of the transformers config class of that model type"
# Keys whose value is a count or a width: zero or less makes no model (transformers fails later with
# "negative dimension" or builds nothing), so they are refused up front with the key's name.
_SIZE_KEY = re.compile(r"(size|dim|heads|layers|positions|embeddings|experts|^num_|^n_)")
# Bookkeeping fields of every transformers config: never a sensible suggestion for a misspelt size.
_INTERNAL_KEYS = {"_name_or_path", "transformers_version", "architectures", "model_type", "dtype", "id2label",
                  "label2id", "problem_type", "return_dict", "output_attentions", "output_hidden_states"}


@dataclass(frozen=True)
class TinyProblem:
    """What is wrong with a ``tiny(...)`` config: ``on`` says what is at fault (the model type, an unknown key,
    a key's value, or the config as a whole), ``key`` the keyword where one is to blame, ``message`` one line,
    ``hint`` the fix."""

    on: Literal["type", "key", "value", "config"]
    key: str | None
    message: str
    hint: str


def tiny_problem(name: str, config: dict[str, Any]) -> TinyProblem | None:
    """The first problem of ``tiny(name, **config)``, or None when transformers builds its config.

    ``name`` must be a transformers model type with a causal-LM class (``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``);
    each key must be an attribute its config class knows (a field of its default ``to_dict()``, an
    ``attribute_map`` alias, a dataclass field, or a keyword the class consumes, such as ``rope_theta``);
    a size (a key like ``hidden_size`` whose default is a positive integer) must be a positive integer, and
    a value must have its default's type; then the config with :data:`TINY_DEFAULTS` under it must pass the
    config class's own validators (e.g. heads dividing the width).
    """
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if name not in causal:
        close = suggest(name, causal)
        what = "not a transformers model type" if name not in CONFIG_MAPPING else "not a causal language model"
        return TinyProblem("type", None, what, (f"did you mean `{close}`? " if close else "")
                           + "`tiny(NAME, ...)` takes a transformers model type with a causal-LM class, e.g. "
                             "`llama`, `qwen2`")
    cls = CONFIG_MAPPING[name]
    defaults = cls().to_dict()
    aliases = getattr(cls, "attribute_map", {}) or {}
    known = set(defaults) | set(aliases)
    if dataclasses.is_dataclass(cls):
        known |= {f.name for f in dataclasses.fields(cls)}
    for key, value in config.items():
        if key not in known and _stored_as_unknown(cls, key, value):
            close = suggest(key, known - _INTERNAL_KEYS)
            return TinyProblem("key", key, f"unknown config key `{key}`", (f"did you mean `{close}`? " if close else "")
                               + HINT)
        default = defaults.get(aliases.get(key, key))
        problem = _value_problem(key, value, default, TINY_DEFAULTS.get(key, default))
        if problem is not None:
            return problem
    return _config_problem(name, config)


def _stored_as_unknown(cls: Any, key: str, value: Any) -> bool:
    # transformers keeps an unknown keyword as a junk attribute (so it reappears in to_dict()), while a
    # keyword the class consumes (e.g. llama's `rope_theta`, folded into `rope_parameters`) does not.
    try:
        return key in cls(**{key: value}).to_dict()
    except Exception:  # noqa: BLE001 - any validator error means the key is known; its value is checked later
        return False


def _value_problem(key: str, value: Any, default: Any, example: Any) -> TinyProblem | None:
    # ``default``: the config class's default (its type is the expected one); ``example``: the value a tiny
    # model uses when the key is left out, quoted in the hint.
    if isinstance(default, bool) or default is None:
        if isinstance(default, bool) and not isinstance(value, bool):
            return TinyProblem("value", key, f"`{key} = {_shown(value)}` must be true or false",
                               f"write `{key} = true` or `{key} = false`")
        return None
    if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        return TinyProblem("value", key, f"`{key} = {_shown(value)}` must be an integer",
                           f"write a whole number, e.g. `{key} = {example}`")
    if isinstance(default, int) and default > 0 and _SIZE_KEY.search(key) and value <= 0:
        return TinyProblem("value", key, f"`{key} = {value}` must be a positive size",
                           f"give a whole number of at least 1, e.g. `{key} = {example}`")
    return None


def config_kwargs(name: str, config: dict[str, Any], tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """The keyword arguments a tiny model's transformers config is built with: :data:`TINY_DEFAULTS`, then
    ``tokens`` (its tokenizer's vocabulary size and special ids), then the spec's keys. A default is dropped
    where the spec sets the same attribute under the class's own name (gpt2's ``n_embd`` for
    ``hidden_size``), and a whole number is made a float where the class's default is one
    (``initializer_range = 1``)."""
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[name]
    aliases = getattr(cls, "attribute_map", {}) or {}
    covered = set(config) | {alias for alias, target in aliases.items() if target in config}
    defaults = cls().to_dict()
    spec = {k: float(v) if isinstance(defaults.get(aliases.get(k, k)), float) and type(v) is int else v
            for k, v in config.items()}
    return {**{k: v for k, v in {**TINY_DEFAULTS, **(tokens or {})}.items() if k not in covered}, **spec}


def _config_problem(name: str, config: dict[str, Any]) -> TinyProblem | None:
    from transformers import AutoConfig

    try:
        built = AutoConfig.for_model(name, **config_kwargs(name, config))
    except Exception as e:  # transformers' validators raise ValueError, TypeError or their own errors
        return rejected(name, config, "transformers rejects its config", one_line(e))
    return _composite(name, built) or _heads_problem(config, built)


def rejected(name: str, config: dict[str, Any], what: str, message: str) -> TinyProblem:
    """transformers' error ``message`` about ``tiny(name, **config)``, blamed on the key it names (as written, with
    spaces for underscores, or by its string value), else on the whole config."""
    key = next((k for k, v in config.items() if k in message or k.replace("_", " ") in message
                or isinstance(v, str) and repr(v) in message), None)
    return TinyProblem("config", key, f"{what}: {message}", f"fix the values in `tiny({name}, ...)`; {HINT}")


def _composite(name: str, built: Any) -> TinyProblem | None:
    # A multimodal type (gemma3) keeps its text model's sizes in a sub-config that the tiny keys do not reach.
    subs = sorted(getattr(built, "sub_configs", None) or {})
    if not subs:
        return None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    text = f"{name}_text"
    return TinyProblem("type", None, f"`{name}` is a composite model type (its sizes live in "
                       + ", ".join(f"`{s}`" for s in subs) + "), which the tiny sizes do not reach",
                       f"write its text model type, `{text}`" if text in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else
                       "write a decoder-only model type such as `llama` or `qwen2`")


def _heads_problem(config: dict[str, Any], built: Any) -> TinyProblem | None:
    # Some classes (llama) check that the heads divide the width, others (qwen2) do not, and none checks the
    # key-value heads: either mismatch fails only at the first forward, with a tensor-size error.
    hidden, heads = getattr(built, "hidden_size", None), getattr(built, "num_attention_heads", None)
    kv = getattr(built, "num_key_value_heads", None)
    if not all(isinstance(x, int) and x > 0 for x in (hidden, heads)):
        return None
    if isinstance(kv, int) and kv > 0 and heads % kv:
        key = "num_key_value_heads" if "num_key_value_heads" in config else "num_attention_heads"
        fits = max(d for d in range(1, kv + 1) if heads % d == 0)
        return TinyProblem("value", key if key in config else None,
                           f"the key-value heads ({kv}) must divide the attention heads ({heads})",
                           f"write e.g. `num_key_value_heads = {fits}`")
    if "head_dim" not in config and getattr(built, "head_dim", None) in (None, hidden // heads) and hidden % heads:
        key = next((k for k in ("num_attention_heads", "hidden_size") if k in config), None)
        fits = max(d for d in range(1, heads + 1) if hidden % d == 0)
        return TinyProblem("value", key, f"the attention heads ({heads}) must divide `hidden_size` ({hidden})",
                           f"write e.g. `num_attention_heads = {fits}`, or a `hidden_size` that {heads} divides")
    return None


def build_problem(name: str, config: dict[str, Any], tokens: dict[str, int]) -> TinyProblem | None:
    """What building ``tiny(name, **config)`` with a tokenizer of ``tokens`` (:data:`BYTE_TOKENS`) and a
    first forward find, for a config that passes :func:`tiny_problem`: a vocabulary smaller than the
    tokenizer's, an error while building (on the meta device: no weights), and, up to
    :data:`FORWARD_CHECK_PARAMS` parameters, an error in a forward of 2 rows of 8 tokens, logits that are
    not finite, or a model that sees later tokens (not causal). Takes seconds (it imports the model's code).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = config_kwargs(name, config, tokens)
    problem = vocab_problem(config, kwargs["vocab_size"], tokens["vocab_size"])
    if problem is not None:
        return problem
    built = AutoConfig.for_model(name, **kwargs)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(built)
        if sum(p.numel() for p in model.parameters()) > FORWARD_CHECK_PARAMS:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(built, dtype=torch.float32).eval()
            # two rows that differ only in their last token (ids 0-2 are the specials): a causal model's
            # outputs before it are the same in both
            ids = torch.randint(3, tokens["vocab_size"], (1, 8)).repeat(2, 1)
            ids[1, -1] = 3 + (ids[0, -1] - 2) % (tokens["vocab_size"] - 3)
            with torch.inference_mode():
                logits = model(input_ids=ids).logits.float()
    except Exception as e:  # construction and forward raise anything from KeyError to RuntimeError
        return rejected(name, config, "transformers cannot build or run it", f"{type(e).__name__}: {one_line(e)}")
    if not bool(torch.isfinite(logits).all()):
        return TinyProblem("config", None, "its first forward gives logits that are not finite (NaN or inf)",
                           "check values such as `rope_theta` (positive) and `rope_scaling` factors (at least 1)")
    if not torch.allclose(logits[0, :-1], logits[1, :-1], atol=1e-4):
        return TinyProblem("config", "is_decoder" if "is_decoder" in config else None,
                           "it is not causal: its outputs at a position change with later tokens",
                           "set `is_decoder = true` where the type has it, or use a decoder-only type such as "
                           "`llama`")
    return None


def vocab_problem(config: dict[str, Any], vocab_size: int, tokenizer_size: int) -> TinyProblem | None:
    """A model vocabulary of ``vocab_size`` ids smaller than its tokenizer's ``tokenizer_size`` (the embedding
    lookup of a larger id fails at the first forward)."""
    if vocab_size >= tokenizer_size:
        return None
    return TinyProblem("value", "vocab_size" if "vocab_size" in config else None,
                       f"`vocab_size = {vocab_size}` is smaller than its tokenizer's {tokenizer_size} tokens",
                       "leave `vocab_size` out: it defaults to the tokenizer's")


def _shown(value: Any) -> str:
    """A value as the spec writes it (``true``, ``"32"``), not as Python does."""
    return json.dumps(value)


def one_line(e: BaseException) -> str:
    """``e``'s message on one line, at most 300 characters (transformers' validation errors span lines:
    "Validation error for field 'x':\\n    TypeError: ...")."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
