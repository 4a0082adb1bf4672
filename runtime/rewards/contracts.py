"""Reward contracts, checked before training (`cascadec lint --check-rewards`): every domain's reward builds,
imports resolve, and on a tiny batch it returns one finite float per completion (peers.md pain points 4-7).

The batch is a few samples from the domain's own training data when it can be loaded (the first rows of a
jsonl file, a few reasoning-gym items, inline rows), else synthetic samples whose referenced columns hold
placeholder values of the right shape for the reward kind.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascadec.contract.plan import DataSource, Domain, Origin, Plan, RewardSpec
from cascadec.contract.tables import read_table
from runtime.rewards import build_reward
from runtime.rewards.base import RewardError
from runtime.routing import routes_by_field


@dataclass(frozen=True)
class Problem:
    """A reward that breaks its contract. `origin` is the reward's span (or its domain's) in the spec."""

    domain: str
    kind: str
    message: str
    hint: str | None = None
    origin: Origin | None = None
    code: str = "CAS500"


# Placeholder column values for synthetic samples, by (reward kind, argument name).
_PLACEHOLDERS: dict[tuple[str, str], Any] = {
    ("choice", "answer"): "A",
    ("instructions", "ids"): ["punctuation:no_comma"],
    ("instructions", "kwargs"): [{}],
    ("unit_tests", "tests"): "assert True",
    ("unit_tests", "entry_point"): None,
    ("json_schema", "schema"): {"type": "object"},
}
_DEFAULT_PLACEHOLDER = "2"
_DEFAULT_FIELDS = {"math_verify": {"answer": "answer"}, "exact": {"answer": "answer"},
                   "choice": {"answer": "answer"},
                   "instructions": {"ids": "instruction_id_list", "kwargs": "kwargs"}}


def _fields(spec: RewardSpec) -> Iterator[tuple[str, str, str]]:
    """(kind, argument, column) of every `{"field": column}` the reward and its parts read."""
    for arg, col in _DEFAULT_FIELDS.get(spec.kind, {}).items():
        if arg not in spec.args:
            yield spec.kind, arg, col
    for arg, value in spec.args.items():
        if isinstance(value, dict) and set(value) == {"field"}:
            yield spec.kind, arg, value["field"]
    for part in spec.parts:
        yield from _fields(part)
    yield from _trl_columns(spec)


def _trl_columns(spec: RewardSpec) -> Iterator[tuple[str, str, str]]:
    """(kind, column, column) of every column a `py(..., contract = trl)` function names as a parameter:
    TRL passes dataset columns by name, so synthetic samples must carry them."""
    if spec.kind != "py" or spec.args.get("contract") != "trl":
        return
    from runtime.rewards.adapters import named_columns
    from runtime.rewards.custom import load_function

    extra = {k: v for k, v in spec.args.items() if k not in ("fn", "contract")}
    for col in named_columns(load_function(spec.args["fn"], spec.origin), extra):
        yield spec.kind, col, col


def _synthetic(name: str, spec: RewardSpec, n: int) -> list[Any]:
    from runtime.data import Sample

    answer: Any = _DEFAULT_PLACEHOLDER
    meta: dict[str, Any] = {}
    for kind, arg, col in _fields(spec):
        value = _PLACEHOLDERS.get((kind, arg), _DEFAULT_PLACEHOLDER)
        if col == "answer":
            answer = value
        else:
            meta[col] = value
    if spec.kind == "gym" or any(p.kind == "gym" for p in spec.parts):
        import reasoning_gym

        entry = reasoning_gym.create_dataset(spec.args.get("name") or "basic_arithmetic", size=1, seed=0)[0]
        meta["entry"] = entry
        answer = entry["answer"]
        return [Sample(id=f"{name}/synthetic/{i}", domain=name, prompt=entry["question"], answer=answer,
                       meta=dict(meta)) for i in range(n)]
    return [Sample(id=f"{name}/synthetic/{i}", domain=name, prompt="What is 1 + 1?", answer=answer,
                   meta=dict(meta)) for i in range(n)]


def _head(source: DataSource, n: int) -> DataSource:
    """The first `n` rows of a source, without reading a whole (possibly huge) jsonl file."""
    if source.kind == "gym":
        return source.model_copy(update={"size": n})
    if source.kind == "jsonl" and source.path:
        rows = []
        with Path(source.path).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
                if len(rows) == n:
                    break
        return DataSource(kind="inline", rows=rows, fields=source.fields)
    if source.kind in ("parquet", "arrow", "csv", "json", "hf_disk") and source.path:
        rows = read_table(source.path, "arrow" if source.kind == "hf_disk" else source.kind, source.split, limit=n)
        return DataSource(kind="inline", rows=rows, fields=source.fields)
    if source.kind == "hf" and "[" not in (source.split or ""):
        return source.model_copy(update={"split": f"{source.split or 'train'}[:{n}]"})  # not the whole dataset
    return source


def _uncached_models(spec: RewardSpec) -> Iterator[str]:
    """Hub ids of the models a reward loads that are neither local directories nor in the Hugging Face cache.

    Loading such a model would try the network (with retries) in the middle of a lint; the contract check
    reports it instead.
    """
    from huggingface_hub import try_to_load_from_cache

    source = spec.args.get("model") if spec.kind in ("reward_model", "judge") else None
    if isinstance(source, str) and not Path(source).expanduser().exists() \
            and not source.startswith(("./", "../", "/", "~")) and "generate" not in spec.args:
        if not isinstance(try_to_load_from_cache(source, "config.json"), str):
            yield source
    for part in spec.parts:
        yield from _uncached_models(part)


#: How :func:`tiny_batch` names samples it made up (its ``where`` starts with it).
SYNTHETIC = "synthetic samples"


def tiny_batch(name: str, domain: Domain, n: int = 2) -> tuple[list[Any], str]:
    """(samples, where they came from): `n` samples of the domain's data, else synthetic ones (``where`` then
    starts with :data:`SYNTHETIC` and says why the data could not be loaded)."""
    from runtime.data import DataError, load_source

    try:
        samples = load_source(_head(domain.train, n), domain=name)[:n]
        if samples:
            return samples, "its training data"
        why = "it has no rows"
    except OSError as e:
        why = f"`{e.filename}`: {e.strerror}" if e.filename and e.strerror else str(e)
    except (DataError, ValueError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return _synthetic(name, domain.reward or RewardSpec(kind="exact"), n), \
        f"{SYNTHETIC}, as its data could not be loaded ({why})"


def _completions(samples: list[Any]) -> tuple[list[Any], list[str]]:
    """Each sample twice (a group of two rollouts): one completion quoting the gold answer, one not."""
    batch, texts = [], []
    for s in samples:
        gold = s.answer if isinstance(s.answer, (str, int, float)) else "2"
        batch += [s, s]
        texts += [f"<think>\nwork\n</think>\nThe answer is \\boxed{{{gold}}}.", "I am not sure."]
    return batch, texts


def _describe(values: Any) -> str:
    text = repr(values)
    return text if len(text) <= 80 else text[:77] + "..."


def check_domain(name: str, domain: Domain, *, n: int = 2) -> list[Problem]:
    """Contract problems of one domain's reward (empty when it holds)."""
    spec = domain.reward
    origin = spec.origin or domain.origin

    def problem(message: str, hint: str | None = None) -> list[Problem]:
        return [Problem(name, spec.kind, message, hint, origin)]

    try:
        reward = build_reward(spec, domain=domain)
    except RewardError as err:
        return problem(err.message, err.hint)
    except Exception as err:  # building runs user imports; any failure is a contract failure
        return problem(f"building the reward raised {type(err).__name__}: {err}")
    missing = list(_uncached_models(spec))
    if missing:
        return problem(f"model `{missing[0]}` is neither a local directory nor in the Hugging Face cache",
                       f"download it first (`huggingface-cli download {missing[0]}`) or give a local directory")
    samples, where = tiny_batch(name, domain, n)
    batch, texts = _completions(samples)
    try:
        values = reward(batch, texts)
    except RewardError as err:
        return problem(f"{err.message} (on {where})", err.hint)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return problem(f"the reward raised {type(err).__name__}: {first} (on {where})",
                       "run it on a sample of the domain's data and fix the error")
    if not isinstance(values, (list, tuple)):
        return problem(f"the reward returned {type(values).__name__}, not a list", "return a list of floats")
    if len(values) != len(texts):
        return problem(f"the reward returned {len(values)} values for {len(texts)} completions (on {where})",
                       "return one float per completion")
    # NaN is a routed reward's row without a route (runtime.routing), not a value of the user's function
    skip = routes_by_field(spec)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)
           or not (math.isfinite(v) or (skip and math.isnan(v)))]
    if bad:
        return problem(f"the reward returned {_describe(bad[0])} in {_describe(list(values))}, not a finite float "
                       f"(on {where})", "return one finite float per completion")
    if where.startswith(SYNTHETIC):
        return [Problem(name, spec.kind, f"the reward was checked only on {where}, not on the domain's rows",
                        "make the training data loadable where lint runs so that the reward is checked on real rows; "
                        "otherwise a reward that does not fit the real columns fails only when the run scores its "
                        "first rollouts", origin, code="CAS503")]
    return []


def check_rewards(plan: Plan) -> list[Problem]:
    """Build every domain's reward and run it on a tiny batch.

    Returns:
        One `Problem` per domain (with a reward) whose reward fails to build, raises, or does not return exactly one
        finite float per completion; sorted by domain name.
    """
    from runtime.rewards.prefill import template_problems

    _import_like_run()
    found = [p for name, domain in sorted(plan.domains.items()) if domain.reward is not None
             for p in check_domain(name, domain)]
    broken = {p.domain for p in found}
    return found + [p for p in template_problems(plan) if p.domain not in broken]


def _import_like_run() -> None:
    """Put the working directory first on `sys.path`, as `cascadec run` has it: its stage processes are
    `python -m runtime.entry` started in that directory, so `py("mod:fn")` finds `./mod.py` there too."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
