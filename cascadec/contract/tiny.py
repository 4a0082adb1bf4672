"""``tiny(NAME, key = value, ...)`` models: their defaults and the check of their config, shared by the
compiler (CAS329 at `cascadec lint` and `cascadec run`, located at the keyword) and the runtime
(``runtime.models.check_tiny``, before a tiny model is built).

The check needs transformers' config classes, imported on the first call.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cascadec.contract.suggest import suggest
from cascadec.contract.tiny_rules import heads_problem, odd_rotary_problem, unused_rope_problem, written_key
from cascadec.contract.tiny_rope import missing_rope_problem, rope_record_problem, yarn_factor_problem
from cascadec.contract.tiny_size import experts_problem, layers_problem, size_problems
from cascadec.contract.tiny_values import TinyProblem, field_error, value_problem

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
# Bookkeeping fields of every transformers config: never a sensible suggestion for a misspelt size.
_INTERNAL_KEYS = {"_name_or_path", "transformers_version", "architectures", "model_type", "dtype", "id2label",
                  "label2id", "problem_type", "return_dict", "output_attentions", "output_hidden_states"}
_IGNORED_HINT = ("a setting transformers does not use does nothing: remove it, or set what makes it used (for "
                 "`rope_scaling`, a `rope_type` such as `linear` or `dynamic`)")
# What transformers' messages call a key the spec may write under another name.
_NAMED_AS = {"rope_parameters": ("rope_scaling",)}


def tiny_problems(name: str, config: dict[str, Any]) -> list[TinyProblem]:
    """Every independent problem of ``tiny(name, **config)``; empty when transformers builds its config.

    ``name`` must be a transformers model type with a causal-LM class (``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``).
    Each key is checked on its own (one problem a key): it must be an attribute its config class knows (a
    field of its default ``to_dict()``, an ``attribute_map`` alias, a dataclass field, or a keyword the class
    consumes, such as ``rope_theta``); a value must have its default's type, a size must be positive, a key
    whose meaning fixes a range must lie in it, and the class's validator of that field must accept it
    (`cascadec.contract.tiny_values`). Only when every key passes, the config with :data:`TINY_DEFAULTS`
    under it must pass the config class's own validators (e.g. heads dividing the width) without a warning
    about a key of the spec (such as a `rope_scaling` entry transformers ignores), since those problems can
    be consequences of one bad key.
    """
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if name not in causal:
        close = suggest(name, causal)
        what = "not a transformers model type" if name not in CONFIG_MAPPING else "not a causal language model"
        return [TinyProblem("type", None, what, (f"did you mean `{close}`? " if close else "")
                            + "`tiny(NAME, ...)` takes a transformers model type with a causal-LM class, e.g. "
                              "`llama`, `qwen2`")]
    cls = CONFIG_MAPPING[name]
    with library_log():
        deep = {key: p for key, value in config.items() if (p := _layers_problem(name, cls, key, value))}
        problems = [p for key, value in config.items() if (p := deep.get(key) or _key_problem(name, cls, key, value))]
    if problems and {p.key for p in problems} <= set(deep):
        # every other key passes: the config with a tiny model's depth shows what else is the spec's doing
        shallow = {**config, **{key: _tiny_layers(name, cls) for key in deep}}
        return problems + [p for p in _config_problems(name, shallow) if p.key not in deep]
    return problems or _config_problems(name, config)


@functools.lru_cache(maxsize=None)
def _facts(cls: Any) -> tuple[dict[str, Any], dict[str, str], frozenset[str]]:
    """A config class's defaults, its ``attribute_map`` aliases and every key it knows."""
    defaults = cls().to_dict()
    aliases = getattr(cls, "attribute_map", {}) or {}
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return defaults, aliases, frozenset(set(defaults) | set(aliases) | fields)


def _layers_problem(name: str, cls: Any, key: str, value: Any) -> TinyProblem | None:
    aliases = _facts(cls)[1]
    if key not in ("num_hidden_layers", aliases.get("num_hidden_layers")):
        return None
    return layers_problem(key, value, _tiny_layers(name, cls))


def _tiny_layers(name: str, cls: Any) -> Any:
    return _own_value(name, "num_hidden_layers", _facts(cls)[0].get("num_hidden_layers"))


def _key_problem(name: str, cls: Any, key: str, value: Any) -> TinyProblem | None:
    defaults, aliases, known = _facts(cls)
    stored, error = _alone(cls, key, value, defaults.get(aliases.get(key, key)))
    if key not in known and stored:
        close = suggest(key, known - _INTERNAL_KEYS)
        return TinyProblem("key", key, f"unknown config key `{key}`", (f"did you mean `{close}`? " if close else "")
                           + HINT)
    builds = functools.partial(_uses_all_of, name, key)
    rope = rope_record_problem(key, value, builds)
    if rope is None and error is not None:
        rope = missing_rope_problem(key, value, one_line(error), _rope_sizes(name), builds)
    if rope is not None:
        return rope
    attr = aliases.get(key, key)
    example = _own_value(name, key, defaults.get(attr))
    problem = value_problem(key, value, defaults.get(attr), example) \
        or experts_problem(attr, key, value, defaults.get(attr), example)
    return problem or (field_error(key, value, error, example) if error is not None else None)


def _alone(cls: Any, key: str, value: Any, default: Any) -> tuple[bool, BaseException | None]:
    # transformers keeps an unknown keyword as a junk attribute (so it reappears in to_dict()), while a
    # keyword the class consumes (e.g. llama's `rope_theta`, folded into `rope_parameters`) does not. Built
    # with this key alone, the class's error is about this value, or about it against the class's defaults.
    # A record is copied: transformers writes into `rope_scaling` (its `rope_type`, `rope_theta`).
    value = float(value) if isinstance(default, float) and type(value) is int else copy.deepcopy(value)
    try:
        return key in cls(**{key: value}).to_dict(), None
    except Exception as e:  # noqa: BLE001 - any validator error means the key is known
        return False, e


@functools.lru_cache(maxsize=None)
def _own_config(name: str) -> Any:
    from transformers import AutoConfig

    try:
        with library_log():
            return AutoConfig.for_model(name, **config_kwargs(name, {}, BYTE_TOKENS))
    except Exception:  # noqa: BLE001 - a type whose class refuses the tiny defaults: its class defaults serve
        return None


def _rope_sizes(name: str) -> dict[str, Any]:
    """The sizes a tiny model of type ``name`` has where the spec leaves them out, that RoPE entries depend on."""
    built = _own_config(name)
    hidden, heads = (getattr(built, a, None) or TINY_DEFAULTS[a] for a in ("hidden_size", "num_attention_heads"))
    positions = getattr(built, "max_position_embeddings", None) or TINY_DEFAULTS["max_position_embeddings"]
    return {"max_position_embeddings": positions, "head_dim": getattr(built, "head_dim", None) or hidden // heads}


def _own_value(name: str, key: str, default: Any) -> Any:
    """The value of ``key`` in the config a tiny model of type ``name`` has when the spec leaves it out (e.g.
    llama's `head_dim` is 16, not the class's 128), else ``default``."""
    built = _own_config(name)
    value = getattr(built, key, None)
    if value is None and isinstance(getattr(built, "rope_parameters", None), dict):
        value = built.rope_parameters.get(key)
    return default if value is None or isinstance(value, (dict, list)) else value


def positions_key(name: str, config: dict[str, Any]) -> str | None:
    """The key of ``config`` that sets a model type's ``max_position_embeddings`` (gpt2 calls it `n_positions`);
    None when it sets none or ``name`` is no causal-LM model type (CAS329's of its own)."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if name not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return None
    return written_key(config, "max_position_embeddings", _facts(CONFIG_MAPPING[name])[1])


def config_kwargs(name: str, config: dict[str, Any], tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """The keyword arguments a tiny model's transformers config is built with: :data:`TINY_DEFAULTS`, then
    ``tokens`` (its tokenizer's vocabulary size and special ids), then the spec's keys. A default is dropped
    where the spec sets the same attribute under the class's own name (gpt2's ``n_embd`` for
    ``hidden_size``), and a whole number is made a float where the class's default is one
    (``initializer_range = 1``)."""
    from transformers import CONFIG_MAPPING

    defaults, aliases, _ = _facts(CONFIG_MAPPING[name])
    covered = set(config) | {alias for alias, target in aliases.items() if target in config}
    spec = {k: float(v) if isinstance(defaults.get(aliases.get(k, k)), float) and type(v) is int else
            copy.deepcopy(v) for k, v in config.items()}  # a record is copied, as in `_alone`
    return {**{k: v for k, v in {**TINY_DEFAULTS, **(tokens or {})}.items() if k not in covered}, **spec}


def _config_problems(name: str, config: dict[str, Any]) -> list[TinyProblem]:
    from transformers import AutoConfig

    kwargs = config_kwargs(name, config)
    with library_log() as lines:
        try:
            built = AutoConfig.for_model(name, **kwargs)
        except Exception as e:  # transformers' validators raise ValueError, TypeError or their own errors
            # a class validator (llama's `validate_architecture`, `validate_rope`) may refuse the sizes
            ours = _sizes_problem(name, config, functools.partial(_written_value, name, kwargs), one_line(e))
            return [ours or rejected(name, config, "transformers rejects its config", one_line(e))]
    found = warned(name, config, lines)
    if refusals(found):
        return found
    large = _large(name, config, built)
    if large:
        return found + large
    more = _composite(name, built) or _sizes_problem(name, config, lambda attr: getattr(built, attr, None),
                                                     factor=_rotary_share(built))
    return found + ([more] if more else [])


def _large(name: str, config: dict[str, Any], built: Any) -> list[TinyProblem]:
    """Too many parameters for a tiny model (`cascadec.contract.tiny_size`), counted from the built config
    before any module is built."""
    from transformers import CONFIG_MAPPING

    defaults, aliases, _ = _facts(CONFIG_MAPPING[name])
    attrs = ("num_hidden_layers", "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
             "head_dim", "num_key_value_heads", "num_local_experts", "num_experts", "tie_word_embeddings")
    sizes = {a: getattr(built, a, None) for a in attrs}
    if sizes["vocab_size"] is None or "vocab_size" not in config:  # the tokenizer's, as when it is built
        sizes["vocab_size"] = BYTE_VOCAB_SIZE
    return size_problems(sizes, lambda a: _own_value(name, a, defaults.get(aliases.get(a, a))),
                         lambda a: written_key(config, a, aliases))


def _written_value(name: str, kwargs: dict[str, Any], attr: str) -> Any:
    """The value ``kwargs`` gives the config attribute ``attr``, under its own name or the class's."""
    from transformers import CONFIG_MAPPING

    key = written_key(kwargs, attr, _facts(CONFIG_MAPPING[name])[1])
    return kwargs[key] if key is not None else None


_SIZES = ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim")


def _rotary_share(built: Any) -> float | None:
    """The share of each head a built config's RoPE turns (its ``partial_rotary_factor``, 1 where unset); None
    for a model type without RoPE (no ``rope_parameters``, such as gpt2)."""
    rope = getattr(built, "rope_parameters", None)
    if not isinstance(rope, dict):
        return None
    share = rope.get("partial_rotary_factor", getattr(built, "partial_rotary_factor", None))
    return float(share) if isinstance(share, (int, float)) and not isinstance(share, bool) else 1.0


def _sizes_problem(name: str, config: dict[str, Any], value: Any, error: str = "",
                   factor: float | None = None) -> TinyProblem | None:
    """Heads or a head width that the config class refuses (its validator's ``error``) or that fail at the
    first forward, in the spec's words (`cascadec.contract.tiny_rules`); ``value(attr)`` reads a size,
    ``factor`` is :func:`_rotary_share` of the built config (None where it was not built or has no RoPE)."""
    from transformers import CONFIG_MAPPING

    _, aliases, known = _facts(CONFIG_MAPPING[name])
    sizes = {a: value(a) for a in _SIZES}
    return heads_problem(config, sizes, aliases, "num_key_value_heads" in known) \
        or odd_rotary_problem(config, sizes, aliases, factor, error)


@contextmanager
def library_log() -> Iterator[list[str]]:
    """The warnings transformers logs, and Python warnings, raised inside the block: collected in the list it
    gives (filled when the block ends) instead of printed, so that no raw library line reaches lint's output
    and each can be turned into a located diagnostic (:func:`warned`)."""
    logger = logging.getLogger("transformers")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    saved = logger.handlers, logger.level
    logger.handlers, logger.level = [Keep(logging.WARNING)], logging.WARNING
    # transformers' `warning_once` remembers what it said in this process: cleared, every check sees it again
    getattr(getattr(logging.Logger, "warning_once", None), "cache_clear", lambda: None)()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield lines
    finally:
        logger.handlers, logger.level = saved
        lines.extend(str(w.message) for w in caught)


def warned(name: str, config: dict[str, Any], lines: list[str]) -> list[TinyProblem]:
    """A problem for each distinct warning of ``lines`` that names a key of ``config``. transformers logs, rather
    than raises, that it ignores a setting (``Unrecognized keys in `rope_parameters` ... {'factor'}``: on
    ``ignored``) or that a value is invalid ("... must be ...", "Missing required keys": on ``config``); other
    lines doubt a setting it still uses (on ``warned``: a warning, not a refusal). Lines about no key of the
    spec (a default's value, a deprecation inside transformers) are not the spec's doing and are dropped."""
    out: dict[str, TinyProblem] = {}
    for line in dict.fromkeys(lines):
        key = _named_key(config, line)
        if key is None or key in out:
            continue
        text = one_line(Exception(line))
        rope = unused_rope_problem(config, line, lambda k, record: _uses_all(name, {**config, k: record})) \
            or yarn_factor_problem(config, line)
        if rope is not None:
            out[key] = rope
        elif "nrecognized" in line or "ignor" in line:
            out[key] = TinyProblem("ignored", key, f"transformers ignores it: {text}", _IGNORED_HINT)
        elif any(word in line for word in ("must be", "Missing required", "should be")):
            out[key] = TinyProblem("config", key, f"transformers rejects its value: {text}",
                                   f"fix the value it names; {HINT}")
        else:
            out[key] = TinyProblem("warned", key, f"transformers warns about it: {text}",
                                   "check that the setting means what you intend; transformers uses it as written")
    return list(out.values())


def _uses_all(name: str, config: dict[str, Any]) -> bool:
    """Whether transformers builds ``tiny(name, **config)``'s config without a word about it."""
    from transformers import AutoConfig

    with library_log() as lines:
        try:
            AutoConfig.for_model(name, **config_kwargs(name, config))
        except Exception:  # noqa: BLE001 - any refusal: not a config to suggest
            return False
    return not lines


def _uses_all_of(name: str, key: str, value: Any) -> bool:
    return _uses_all(name, {key: value})


def _named_key(config: dict[str, Any], message: str) -> str | None:
    """The key of ``config`` that transformers' ``message`` names: as written, with spaces for underscores, by
    its string value, or by the name transformers gives it (`rope_parameters` for `rope_scaling`)."""
    named_as = {k: (k, k.replace("_", " ")) + tuple(n for n, same in _NAMED_AS.items() if k in same)
                for k in config}
    return next((k for k, v in config.items() if any(n in message for n in named_as[k])
                 or isinstance(v, str) and repr(v) in message), None)


def rejected(name: str, config: dict[str, Any], what: str, message: str) -> TinyProblem:
    """transformers' error ``message`` about ``tiny(name, **config)``, blamed on the key it names
    (:func:`_named_key`), else on the whole config."""
    return TinyProblem("config", _named_key(config, message), f"{what}: {message}",
                       f"fix the values in `tiny({name}, ...)`; {HINT}")


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


def build_problems(name: str, config: dict[str, Any], tokens: dict[str, int]) -> list[TinyProblem]:
    """What building ``tiny(name, **config)`` with a tokenizer of ``tokens`` (:data:`BYTE_TOKENS`) and a
    first forward find, for a config that passes :func:`tiny_problems`: a vocabulary smaller than the
    tokenizer's, an error while building (on the meta device: no weights), and, up to
    :data:`FORWARD_CHECK_PARAMS` parameters, an error in a forward of 2 rows of 8 tokens, logits that are
    not finite, or a model that sees later tokens (not causal); and the warnings transformers logs meanwhile
    about a key of the spec (:func:`warned`). Takes seconds (it imports the model's code).
    """
    with library_log() as lines:
        problem = _build_problem(name, config, tokens)
    found = warned(name, config, lines)
    return found + ([problem] if problem is not None and not refusals(found) else [])


def refusals(problems: list[TinyProblem]) -> list[TinyProblem]:
    """The problems that refuse the model: all but the warnings of transformers about a setting it still uses."""
    return [p for p in problems if p.on != "warned"]


def _build_problem(name: str, config: dict[str, Any], tokens: dict[str, int]) -> TinyProblem | None:
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


def one_line(e: BaseException) -> str:
    """``e``'s message on one line, at most 300 characters (transformers' validation errors span lines:
    "Validation error for field 'x':\\n    TypeError: ...")."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
