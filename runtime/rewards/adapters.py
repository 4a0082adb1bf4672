"""Reward functions written for other frameworks: ``py("pkg.mod:fn", contract = verl | trl | openrlhf | cascadec)``.

Each contract calls the user's function with that framework's arguments and reads its return convention:

- ``cascadec``: ``fn(samples, completions, **args)`` -> one number (or dict) per completion.
- ``verl`` (veRL ``reward_score`` / ``NaiveRewardManager``): per completion
  ``fn(data_source=..., solution_str=completion, ground_truth=..., extra_info=..., **args)`` -> a number or a
  dict with ``score``. ``data_source`` is the row's ``data_source`` column (else the domain name),
  ``ground_truth`` the sample's answer (the ``reward_model.ground_truth`` column when no answer is mapped),
  ``extra_info`` the ``extra_info`` column (else ``{}``).
- ``trl`` (TRL ``GRPOTrainer`` reward functions): ``fn(prompts=[...], completions=[...], **columns, **args)``
  -> a list of numbers. A chat-list sample gives its turns as the prompt and ``[{"role": "assistant",
  "content": text}]`` as the completion (TRL's conversational format); every other column is passed as a
  list under its name (the answer as ``answer``). A function without ``**kwargs`` gets only the columns it names.
- ``openrlhf`` (OpenRLHF ``--remote_rm_url`` Python file): ``fn(queries, prompts, labels, **args)`` -> a
  tensor/list, or a dict with ``rewards`` (used), ``scores`` and ``extra_logs`` (logged). ``queries`` is the
  prompt text followed by the completion (not re-rendered with the chat template), ``labels`` the answers.

Dict returns: the ``score`` (``rewards`` for openrlhf) is the reward; every other numeric value is an extra
logged per completion, read by :func:`extras` (``reward/<domain>/<name>`` metrics). Extra ``args`` from the
spec are checked against the function's signature when the reward is built.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError

CONTRACTS = ("cascadec", "verl", "trl", "openrlhf")
_SUPPLIED = {"cascadec": ("samples", "completions"),
             "verl": ("data_source", "solution_str", "ground_truth", "extra_info"),
             "trl": ("prompts", "completions"), "openrlhf": ("queries", "prompts", "labels")}
_TYPES: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,),
                                       list: (list,), dict: (dict,), "int": (int,), "float": (int, float),
                                       "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}


def check_signature(fn: Callable, target: str, contract: str, args: dict[str, Any],
                    origin: Origin | None = None) -> None:
    """Check that ``fn`` takes the contract's arguments plus ``args`` (by name and simple type annotation).

    Raises:
        RewardError: an argument the function does not take, a value whose type differs from the
            annotation (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``), or a required parameter
            that neither the contract nor the spec supplies.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # a builtin or C function: nothing to read
    open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    supplied = set(_SUPPLIED[contract])
    positional = contract in ("cascadec", "openrlhf")
    for name, value in args.items():
        if name not in params and not open_kw:
            raise RewardError(f"reward `{target}` does not take argument `{name}`",
                              hint="parameters: " + ", ".join(f"`{p}`" for p in params) +
                              "; remove the argument or add it to the function", origin=origin)
        want = _TYPES.get(params[name].annotation) if name in params else None
        if want and (not isinstance(value, want) or (bool not in want and isinstance(value, bool))):
            raise RewardError(f"argument `{name}` of reward `{target}` is {type(value).__name__}, but the function "
                              f"annotates it `{want[-1].__name__}`", hint=f"give `{name}` a {want[-1].__name__}",
                              origin=origin)
    for i, (name, p) in enumerate(params.items()):
        if p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL) or p.default is not p.empty:
            continue
        # a TRL function names dataset columns as parameters; those are checked when it is called on data
        given = name in supplied or name in args or (positional and i < len(_SUPPLIED[contract]))
        if not given and contract != "trl":
            raise RewardError(f"reward `{target}` needs parameter `{name}`, which the `{contract}` contract does not "
                              "supply", hint=f"the `{contract}` contract passes " +
                              ", ".join(f"`{a}`" for a in _SUPPLIED[contract]) +
                              f"; give `{name}` a default or pass it: py(\"{target}\", {name} = ...)", origin=origin)



def named_columns(fn: Callable, args: dict[str, Any]) -> list[str]:
    """The dataset columns a TRL-contract function requires: its parameters without a default that neither
    the contract (``prompts``, ``completions``) nor the spec's ``args`` supply, e.g. ``solution`` of
    ``accuracy(completions, solution, **kwargs)``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    return [name for name, p in params.items()
            if p.default is p.empty and name not in _SUPPLIED["trl"] and name not in args
            and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]

def _number(value: Any, target: str, i: int, origin: Origin | None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RewardError(f"reward `{target}` returned {value!r} for completion {i}, not a number",
                          hint="return one finite number (or a dict with `score`) per completion", origin=origin)
    if not math.isfinite(float(value)):
        raise RewardError(f"reward `{target}` returned a non-finite value ({value!r}) for completion {i}",
                          hint="return one finite number (or a dict with `score`) per completion", origin=origin)
    return float(value)


def _flat(values: Any) -> list[Any]:
    """A list of per-completion values from a list, tuple, numpy array or torch tensor."""
    tolist = getattr(values, "tolist", None)
    return list(tolist()) if callable(tolist) else list(values)


class Adapted:
    """The scores of one call of a user function: ``scores`` and per-completion extra values by name."""

    def __init__(self, n: int, target: str, origin: Origin | None) -> None:
        self.n, self.target, self.origin = n, target, origin
        self.scores: list[float] = []
        self.extras: dict[str, list[float]] = {}

    def add(self, value: Any, score_key: str = "score") -> None:
        i = len(self.scores)
        if isinstance(value, dict):
            if score_key not in value:
                raise RewardError(f"reward `{self.target}` returned a dict without `{score_key}` for completion {i}",
                                  hint=f"return {{\"{score_key}\": x, ...}}; other keys are logged", origin=self.origin)
            for key, extra in value.items():
                if key != score_key and isinstance(extra, numbers.Real) and math.isfinite(float(extra)):
                    self.extras.setdefault(str(key), [math.nan] * self.n)[i] = float(extra)
            value = value[score_key]
        if value is None:
            raise RewardError(f"reward `{self.target}` returned None for completion {i}",
                              hint="return a number for every completion; to score some rows with another "
                                   "function, route rows by a field (`route(...)`)", origin=self.origin)
        self.scores.append(_number(value, self.target, i, self.origin))


def _column_lists(samples: Sequence[Any], accepts: Callable[[str], bool]) -> dict[str, list[Any]]:
    names = sorted({k for s in samples for k in s.meta} | {"answer"})
    out = {}
    for name in names:
        if name in ("prompts", "completions") or not accepts(name):
            continue
        out[name] = [s.answer if name == "answer" else s.meta.get(name) for s in samples]
    return out


def call_contract(fn: Callable, contract: str, samples: Sequence[Any], completions: Sequence[str],
                  kwargs: dict[str, Any], target: str, origin: Origin | None = None) -> Adapted:
    """Call ``fn`` under ``contract`` on one batch; the scores and extras it returned.

    Raises:
        RewardError: a wrong number of values, a value that is not a finite number, a dict without its
            score key, ``None``.
    """
    n = len(completions)
    out = Adapted(n, target, origin)
    if contract == "verl":
        for s, c in zip(samples, completions):
            truth = s.answer if s.answer is not None else (s.meta.get("reward_model") or {}).get("ground_truth")
            out.add(fn(data_source=s.meta.get("data_source", s.domain), solution_str=c, ground_truth=truth,
                       extra_info=s.meta.get("extra_info") or {}, **kwargs))
        return out
    if contract == "trl":
        params = inspect.signature(fn).parameters
        open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        chat = [s.messages is not None for s in samples]
        prompts = [list(s.messages) if c else s.prompt for s, c in zip(samples, chat)]
        comps = [[{"role": "assistant", "content": t}] if c else t for t, c in zip(completions, chat)]
        columns = _column_lists(samples, lambda k: open_kw or k in params)
        values = fn(prompts=prompts, completions=comps, **columns, **kwargs)
    elif contract == "openrlhf":
        values = fn([s.prompt + c for s, c in zip(samples, completions)], [s.prompt for s in samples],
                    [s.answer for s in samples], **kwargs)
        if isinstance(values, dict):
            return _openrlhf_dict(values, out)
    else:
        values = fn(list(samples), list(completions), **kwargs)
    try:
        flat = _flat(values)
    except TypeError:
        raise RewardError(f"reward `{target}` returned {type(values).__name__}, not a list of numbers",
                          hint="return one number per completion", origin=origin) from None
    if len(flat) != n:
        raise RewardError(f"reward `{target}` returned {len(flat)} values for {n} completions",
                          hint="return one number per completion", origin=origin)
    for v in flat:
        out.add(v)
    return out


def _openrlhf_dict(values: dict, out: Adapted) -> Adapted:
    """OpenRLHF's dict return: ``rewards`` trains, ``scores`` and each of ``extra_logs`` are logged."""
    if "rewards" not in values:
        raise RewardError(f"reward `{out.target}` returned a dict without `rewards`",
                          hint="return {\"rewards\": ..., \"scores\": ..., \"extra_logs\": {...}}", origin=out.origin)
    logged = {"scores": values["scores"]} if "scores" in values else {}
    logged.update(values.get("extra_logs") or {})
    per_row: list[dict[str, Any]] = [{} for _ in range(out.n)]
    for key, col in logged.items():
        flat = _flat(col)
        if len(flat) == out.n:
            for row, v in zip(per_row, flat):
                row[key] = v
    rewards = _flat(values["rewards"])
    if len(rewards) != out.n:
        raise RewardError(f"reward `{out.target}` returned {len(rewards)} rewards for {out.n} completions",
                          hint="return one reward per completion", origin=out.origin)
    for row, r in zip(per_row, rewards):
        out.add({**row, "rewards": r}, score_key="rewards")
    return out
