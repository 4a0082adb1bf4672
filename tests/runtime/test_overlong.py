"""Overlong rules with rewards of any sign: the penalty value and DAPO's soft overlong punishment (Eq. 13)."""

import pytest
import torch

from cascadec.contract.plan import Domain, GRPOParams, Optim, RewardSpec, Schedule, DataSource
from runtime.losses.overlong import OverlongRule, apply_rules, rule_of, soft_overlong


def test_soft_overlong_matches_dapo_eq13_by_hand():
    # L_max = 20, L_cache = 8: no penalty up to 12 tokens, linear to -1 at 20 (times the factor)
    lengths = torch.tensor([5.0, 12.0, 13.0, 16.0, 20.0])
    assert soft_overlong(lengths, 20, 8).tolist() == [0.0, 0.0, -1 / 8, -0.5, -1.0]
    assert soft_overlong(lengths, 20, 8, factor=0.5).tolist() == [0.0, 0.0, -1 / 16, -0.25, -0.5]
    with pytest.raises(ValueError, match="buffer"):
        soft_overlong(lengths, 20, 0)


def test_rules_per_row_with_negative_rewards():
    rewards = torch.tensor([-1.0, 1.0, 1.0, 0.5, -0.2])
    truncated = torch.tensor([True, True, False, True, False])
    lengths = torch.tensor([20.0, 20.0, 16.0, 20.0, 3.0])
    rules = [OverlongRule("penalty", value=-1.0), OverlongRule("penalty", value=-1.0), OverlongRule("soft", buffer=8),
             OverlongRule("filter"), OverlongRule("none")]
    out, keep = apply_rules(rewards, truncated, lengths, 20, rules)
    # a truncated rollout with a wrong answer (-1) is not lifted to 0 by the penalty
    assert out.tolist() == [-1.0, -1.0, 0.5, 0.5, pytest.approx(-0.2)]
    assert keep.tolist() == [True, True, True, False, True]


def test_stage_rule_replaces_the_domain_rule():
    domain = Domain(name="d", train=DataSource(kind="inline", rows=[{"prompt": "p"}]), reward=RewardSpec(kind="exact"),
                    overlong="penalty", overlong_value=-0.5)
    optim = Optim(lr=Schedule(peak=1e-6))
    assert rule_of(GRPOParams(optim=optim, steps=1), domain) == OverlongRule("penalty", value=-0.5)
    stage = GRPOParams(optim=optim, steps=1, overlong="soft", overlong_buffer=64, overlong_factor=2.0)
    assert rule_of(stage, domain) == OverlongRule("soft", buffer=64, factor=2.0)
