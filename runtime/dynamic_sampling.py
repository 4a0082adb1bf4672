"""DAPO dynamic sampling with a budget, and the watch for a stage that learns nothing.

DAPO (arXiv 2503.14476, §3.2, Algorithm 1 line 6) over-samples until the batch holds ``prompts_per_step``
groups whose rewards are not all equal, since a group of equal rewards has advantage 0 and gives no gradient.
With data too hard (or too easy) for the model that loop never ends, and plain filtering trains on nothing;
here the loop is bounded by ``budget`` generation batches and what happens then is the spec's ``policy``:

- ``error``: stop the stage with a :class:`NoSignalError` that says how many groups were informative;
- ``partial``: train on the informative groups there are, with a warning (the default: never silent);
- ``skip``: take no optimizer step this step, with a warning.

With a budget of one generation batch (plain dynamic filtering, as the Cascade papers' IF-RL), a batch short
of informative groups is the normal case and is reported as the ``informative_frac`` metric; the warning
comes only when not one group is informative.

:class:`NoSignalWatch` warns when ``patience`` consecutive steps had no informative group at all, whatever
the filtering mode (plain GRPO with all-equal rewards trains on zero advantages, loss 0, silently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cascadec.contract.errors import UserError

ShortfallPolicy = Literal["error", "partial", "skip"]
SHORTFALL_POLICIES = ("error", "partial", "skip")


class NoSignalError(UserError):
    """Dynamic sampling ran out of budget under ``policy = error`` (a user-facing stop with a fix hint)."""


@dataclass(frozen=True)
class Collected:
    """What the sampler decided after one attempt: ``more`` = sample another generation batch;
    ``train`` = take an optimizer step on the informative groups gathered; ``warning`` = text to show."""

    more: bool
    train: bool
    warning: str | None = None


def after_attempt(informative: int, wanted: int, attempt: int, budget: int, policy: ShortfallPolicy,
                  stage: str, step: int) -> Collected:
    """The decision after ``attempt`` (1-based) generation batches gathered ``informative`` groups.

    ``informative`` and ``wanted`` count groups over all data-parallel ranks, so every rank decides the same.

    Raises:
        NoSignalError: the budget is spent with fewer than ``wanted`` groups and ``policy == "error"``.
    """
    if informative >= wanted:
        return Collected(more=False, train=True)
    if attempt < budget:
        return Collected(more=True, train=False)
    what = (f"stage `{stage}` step {step}: {informative} of {wanted} groups carry a learning signal after "
            f"{budget} generation batch{'es' if budget != 1 else ''} (the others' rewards are all equal)")
    hint = ("help: the data may be too hard or too easy for the model: check the pass rate, raise "
            "`sampling_budget`, or use `on_no_signal = partial`")
    if policy == "error":
        raise NoSignalError(f"{what}\n{hint}")
    if policy == "skip" or informative == 0:
        return Collected(more=False, train=False, warning=f"{what}; no update this step")
    return Collected(more=False, train=True, warning=f"{what}; training on those {informative}" if budget > 1 else None)


class NoSignalWatch:
    """Counts consecutive steps without one informative group; warns at every ``patience``-th such step.

    The count is trainer state (checkpointed), so a resumed run warns when an uninterrupted one would.
    """

    def __init__(self, stage: str, patience: int) -> None:
        self.stage = stage
        self.patience = patience
        self.streak = 0

    def observe(self, step: int, informative: int) -> str | None:
        """Record one step's informative-group count (all ranks); returns a warning or None."""
        self.streak = 0 if informative else self.streak + 1
        if self.patience < 1 or self.streak == 0 or self.streak % self.patience:
            return None
        return (f"stage `{self.stage}`: no group with a learning signal for {self.streak} steps in a row "
                f"(up to step {step}): every rollout of a prompt got the same reward, so the loss is 0\n"
                "help: check the reward on a few completions and the pass rate; easier data, more rollouts per "
                "prompt, or `dynamic_filter = on` with a `sampling_budget` help")
