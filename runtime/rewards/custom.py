"""`py("package.module:function")`: a user reward function, imported by explicit module path.

The function is called under its contract (`runtime.rewards.adapters`: cascadec's own `fn(samples,
completions, **args)`, veRL, TRL or OpenRLHF) and must give one finite number per completion. The reference names module and attribute separately (`:`), so a dotted path inside a package is
never mistaken for a model id or imported by its last segment only (peers.md pain points 4 and 5); the
function must pickle by reference so that process-based reward workers can receive it.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

from cascadec.contract.plan import Origin
from runtime.rewards.adapters import CONTRACTS, call_contract, check_signature
from runtime.rewards.base import RewardError, check_batch


def _import(module_name: str, origin: Origin | None) -> Any:
    """Import from the working directory and ``sys.path`` first, then from the spec's own directory, so a
    reward module next to the spec is found by `cascadec run` and `lint --check-rewards` from any directory."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        spec_dir = os.path.dirname(os.path.abspath(origin.path)) if origin and not origin.path.startswith("<") else None
        if spec_dir is None or err.name != module_name.split(".")[0] or spec_dir in sys.path:
            raise
        sys.path.append(spec_dir)
        return importlib.import_module(module_name)


def load_function(target: str, origin: Origin | None = None) -> Any:
    """Import `package.module:function` (attribute path after `:` may be dotted, e.g. `mod:Class.method`).

    Raises:
        RewardError: malformed reference, module not importable, attribute missing, not callable or not
            picklable; the message names the reference.
    """
    if ":" not in target:
        module, _, attr = target.rpartition(".")
        hint = f"write py(\"{module}:{attr}\")" if module else "write py(\"package.module:function\")"
        raise RewardError(f"reward reference `{target}` has no `:` between module and function", hint=hint,
                          origin=origin)
    module_name, attr_path = target.split(":", 1)
    try:
        obj: Any = _import(module_name, origin)
    except Exception as err:  # an import runs arbitrary user code; report whatever it raised
        raise RewardError(f"cannot import module `{module_name}` for reward `{target}`: "
                          f"{type(err).__name__}: {err}",
                          hint="modules are imported from the directory `cascadec run` starts in, then from the "
                               "spec's directory: put the module in one of them, or its folder on PYTHONPATH",
                          origin=origin) from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise RewardError(f"module `{module_name}` has no attribute `{attr_path}`",
                              hint="check the function name after `:`", origin=origin)
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardError(f"reward `{target}` is not callable", origin=origin)
    try:
        pickle.dumps(obj)
    except Exception as err:
        raise RewardError(f"reward `{target}` cannot be pickled ({err})",
                          hint="define it at module top level, not as a lambda or closure", origin=origin) from None
    return obj


class PyReward:
    """Calls a user function under a contract (``runtime.rewards.adapters``); extra spec arguments are passed
    on as keyword arguments, checked against the function's signature when the reward is built.

    Args:
        fn: `package.module:function`.
        contract: ``cascadec`` (default), ``verl``, ``trl`` or ``openrlhf``.
    """

    def __init__(self, fn: str, *, contract: str = "cascadec", origin: Origin | None = None, **kwargs: Any) -> None:
        if contract not in CONTRACTS:
            raise RewardError(f"reward contract `{contract}` does not exist",
                              hint="contracts: " + ", ".join(f"`{c}`" for c in CONTRACTS), origin=origin)
        self.target = fn
        self.contract = contract
        self.fn = load_function(fn, origin)
        self.kwargs = kwargs
        self.origin = origin
        self.last_extras: dict[str, list[float]] = {}
        check_signature(self.fn, fn, contract, kwargs, origin)

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        result = call_contract(self.fn, self.contract, samples, completions, self.kwargs, self.target, self.origin)
        self.last_extras = result.extras
        return result.scores
