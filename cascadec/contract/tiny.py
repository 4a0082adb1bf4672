"""``tiny(NAME, key = value, ...)`` models: their defaults and the check of their config, shared by the
compiler (CAS329 at `cascadec lint` and `cascadec run`, located at the keyword) and the runtime
(``runtime.models.check_tiny``, before a tiny model is built).

The check needs transformers' config classes, imported on the first call.
"""

from __future__ import annotations

import dataclasses
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
            return TinyProblem("value", key, f"`{key} = {value!r}` must be true or false",
                               f"write `{key} = true` or `{key} = false`")
        return None
    if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        return TinyProblem("value", key, f"`{key} = {value!r}` must be an integer",
                           f"write a whole number, e.g. `{key} = {example}`")
    if isinstance(default, int) and default > 0 and _SIZE_KEY.search(key) and value <= 0:
        return TinyProblem("value", key, f"`{key} = {value}` must be a positive size",
                           f"give a whole number of at least 1, e.g. `{key} = {example}`")
    return None


def _config_problem(name: str, config: dict[str, Any]) -> TinyProblem | None:
    from transformers import AutoConfig

    try:
        AutoConfig.for_model(name, **{**TINY_DEFAULTS, **config})
    except Exception as e:  # transformers' validators raise ValueError, TypeError or their own errors
        message = one_line(e)
        key = next((k for k in config if k in message), None)
        return TinyProblem("config", key, f"transformers rejects its config: {message}",
                           f"fix the values in `tiny({name}, ...)`; {HINT}")
    return None


def one_line(e: BaseException) -> str:
    """``e``'s message on one line, at most 300 characters (transformers' validation errors span lines:
    "Validation error for field 'x':\\n    TypeError: ...")."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
