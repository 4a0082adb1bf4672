"""CAS327: a `gym("NAME", ...)` data source whose config reasoning-gym rejects.

Names and keys are CAS318/CAS319 (`cascadec/checks/gym.py`, from a packaged registry); whether the values
make a valid config only reasoning-gym knows (its config classes assert cross-field rules such as
`min_terms <= max_terms`). So lint builds each generator as the runtime does (`runtime/data.py`:
`reasoning_gym.create_dataset(NAME, size=..., seed=..., **args)`), with a few items instead of `size`.
Importing reasoning-gym costs about a second, so only `cascadec lint` and `cascadec run` build (`BUILD_CHECKS`);
an editor compiling on every keystroke does not, and specs without `gym(...)` data never pay it.
"""

from __future__ import annotations

from collections.abc import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.data import gym_uses
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span

# items built at lint time: enough to run the config's checks and a first `__getitem__`
LINT_SIZE = 2


def _blamed(call: ast.Call, message: str) -> tuple[Span, str]:
    """The keyword the error names (the first one mentioned in the message), else the generator name."""
    for kw in call.kwargs:
        if kw.key.name in message:
            return kw.span, "rejected by reasoning-gym"
    return (call.args[0].span if call.args else call.span), "config rejected by reasoning-gym"


def check_gym_configs(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS327 for every `gym(...)` train or eval source whose generator cannot be built."""
    uses = list(gym_uses(ctx))
    if not uses:
        return
    import reasoning_gym

    for data, call in uses:
        try:
            dataset = reasoning_gym.create_dataset(data.name, size=LINT_SIZE, seed=data.seed, **data.args)
            dataset[0]
        except Exception as e:  # reasoning-gym signals bad configs with AssertionError, ValueError, TypeError
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            span, label = _blamed(call, message)
            yield make("CAS327", f"reasoning-gym cannot build `{data.name}` with these arguments: {message}",
                       span, label=label, secondary=((call.func.span, "generator built here"),),
                       help="change the arguments so that the generator's config accepts them (the message says "
                            "which rule failed)")
