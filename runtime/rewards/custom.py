"""`py("package.module:function")`: a user reward function, imported by explicit module path.

The function is called as `fn(samples, completions, **args)` and must return one finite number per
completion. The reference names module and attribute separately (`:`), so a dotted path inside a package is
never mistaken for a model id or imported by its last segment only (peers.md pain points 4 and 5); the
function must pickle by reference so that process-based reward workers can receive it.
"""

from __future__ import annotations

import importlib
import math
import pickle
from collections.abc import Sequence
from typing import Any

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError, check_batch


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
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # an import runs arbitrary user code; report whatever it raised
        raise RewardError(f"cannot import module `{module_name}` for reward `{target}`: "
                          f"{type(err).__name__}: {err}",
                          hint="modules are imported from the directory `cascadec run` starts in: start it in the "
                               "folder that holds the module, or put that folder on PYTHONPATH",
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
    """Calls a user function; extra spec arguments are passed on as keyword arguments.

    Args:
        fn: `package.module:function`.
    """

    def __init__(self, fn: str, *, origin: Origin | None = None, **kwargs: Any) -> None:
        self.target = fn
        self.fn = load_function(fn, origin)
        self.kwargs = kwargs
        self.origin = origin

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        values = self.fn(list(samples), list(completions), **self.kwargs)
        try:
            out = [float(v) for v in values]
        except (TypeError, ValueError):
            raise RewardError(f"reward `{self.target}` returned {type(values).__name__}, not a list of numbers",
                              hint="return one float per completion", origin=self.origin) from None
        if len(out) != len(completions):
            raise RewardError(f"reward `{self.target}` returned {len(out)} values for {len(completions)} completions",
                              hint="return one float per completion", origin=self.origin)
        bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
        if bad:
            raise RewardError(f"reward `{self.target}` returned a non-finite value at index {bad[0]}",
                              hint="return finite floats", origin=self.origin)
        return out
