"""reasoning-gym generator names and config keys: CAS318 for an unknown `gym("NAME")` (data or a
`gym(name = "NAME")` reward), CAS319 for a `gym(...)` keyword that the generator's config does not have.

Names and keys come from `cascadec/gym_registry.json` (written by `scripts/gen_gym_registry.py` from
`reasoning_gym.factory.DATASETS`), not from reasoning-gym itself: importing it costs about a second, and
`cascadec lint` must stay fast. The runtime passes the same keywords to
`reasoning_gym.create_dataset(NAME, size=..., seed=..., **args)` (`runtime/data.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.contract.suggest import did_you_mean, suggest

# `cascadec.model.to_data` takes these out of `gym(...)` into `DataSource.size`/`.seed`; every other keyword
# becomes a config argument (`DataSource.args`)
CONSUMED_KEYS = frozenset({"seed", "size"})
# reward combinators whose positional arguments are rewards themselves (`cascadec.model.to_reward`)
_COMBINATORS = frozenset({"weighted", "combined_if_rm"})
_LIST_NAMES = 'python -c "import reasoning_gym; print(*sorted(reasoning_gym.factory.DATASETS))"'


@dataclass(frozen=True)
class GymRegistry:
    """The generators of one reasoning-gym version: name → sorted config field names."""

    version: str
    generators: dict[str, tuple[str, ...]]


@cache
def load_registry() -> GymRegistry:
    """`cascadec/gym_registry.json`, read once per process.

    Raises OSError, ValueError or KeyError when the packaged file is missing or corrupt (an installation bug).
    """
    data = json.loads(resources.files("cascadec").joinpath("gym_registry.json").read_text(encoding="utf-8"))
    return GymRegistry(data["reasoning_gym"], {name: tuple(keys) for name, keys in data["generators"].items()})


def _gym_name(call: ast.Call) -> ast.Str | None:
    """The generator name of a well-formed `gym("NAME", ...)`; malformed calls are CAS200 in the model."""
    if len(call.args) == 1 and isinstance(call.args[0], ast.Str):
        return call.args[0]
    return None


def _unknown_name(name: ast.Str, registry: GymRegistry) -> Diagnostic:
    close = suggest(name.value, registry.generators)
    count = len(registry.generators)
    return make("CAS318", f"unknown reasoning-gym generator `{name.value}`", name.span,
                label=f"not a generator of reasoning-gym {registry.version}",
                notes=(f"`{_LIST_NAMES}` prints all {count} generator names",) if close else (),
                help=f"did you mean `{close}`?" if close else
                f"use one of the {count} names that `{_LIST_NAMES}` prints")


def _check_data(call: ast.Call, registry: GymRegistry) -> Iterator[Diagnostic]:
    name = _gym_name(call)
    if name is None:
        return
    fields = registry.generators.get(name.value)
    if fields is None:
        yield _unknown_name(name, registry)
        return
    for kw in call.kwargs:
        if kw.key.name in CONSUMED_KEYS or kw.key.name in fields:
            continue
        yield make("CAS319", f"reasoning-gym generator `{name.value}` has no config key `{kw.key.name}`",
                   kw.key.span, label="not a field of its config", secondary=((name.span, "generator named here"),),
                   help=did_you_mean(kw.key.name, fields, "keys"))


def _check_reward(value: ast.Value, registry: GymRegistry) -> Iterator[Diagnostic]:
    if not isinstance(value, ast.Call):
        return
    if value.func.name in _COMBINATORS:
        for part in value.args:
            yield from _check_reward(part, registry)
    elif value.func.name == "gym":
        for kw in value.kwargs:
            if kw.key.name == "name" and isinstance(kw.value, ast.Str) \
                    and kw.value.value not in registry.generators:
                yield _unknown_name(kw.value, registry)


def check_gym(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS318/CAS319 for every domain's `train`, `reward` and `eval` in the spec and its imports."""
    registry = load_registry()
    for domain in ctx.view.domains:
        for a in domain.assigns:
            if a.key.name == "train" and isinstance(a.value, ast.Call) and a.value.func.name == "gym":
                yield from _check_data(a.value, registry)
            elif a.key.name == "reward":
                yield from _check_reward(a.value, registry)
        for ev in domain.evals:
            if isinstance(ev.data, ast.Call) and ev.data.func.name == "gym":
                yield from _check_data(ev.data, registry)
