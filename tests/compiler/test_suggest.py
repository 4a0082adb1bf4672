"""Help lines that list names name each candidate once, however the caller built the list."""

from __future__ import annotations

from cascadec.contract.suggest import did_you_mean, listed, suggest


def test_a_candidate_given_twice_is_listed_once() -> None:
    assert did_you_mean("zzz", ["rl", "base", "base"], "stages") == "valid stages: `base`, `rl`"


def test_listed_keeps_the_given_order_and_drops_repeats() -> None:
    assert listed(["fp32", "bf16", "fp32", "fp16"]) == "`fp32`, `bf16`, `fp16`"


def test_a_repeated_candidate_is_still_suggested() -> None:
    assert suggest("bse", ["base", "base", "rl"]) == "base"
