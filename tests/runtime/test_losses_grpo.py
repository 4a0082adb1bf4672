"""GRPO group advantages, dynamic filtering and overlong rules against hand-computed values."""

import pytest
import torch

from runtime.losses.grpo import apply_overlong, group_advantages, informative_groups

torch.set_num_threads(2)


def test_advantages_hand_computed_with_zero_std_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    # group 1: mean 0.25, Bessel std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5; group 2: all equal -> 0.
    adv = group_advantages(rewards, 4, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
    assert informative_groups(rewards, 4).tolist() == [True, False]


def test_advantages_reject_bad_groups():
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        group_advantages(torch.zeros(4), 3)


def test_overlong_penalty_and_filter():
    rewards = torch.tensor([1.0, 1.0, 0.0])
    truncated = torch.tensor([False, True, True])
    pen, keep = apply_overlong(rewards, truncated, "penalty")
    assert pen.tolist() == [1.0, 0.0, 0.0] and keep.all()
    kept_rewards, keep = apply_overlong(rewards, truncated, "filter")
    assert kept_rewards.tolist() == [1.0, 1.0, 0.0] and keep.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="unknown overlong mode"):
        apply_overlong(rewards, truncated, "drop")
