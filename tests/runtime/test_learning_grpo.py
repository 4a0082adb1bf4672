"""A learning test: GRPO raises a tiny random-init model's reward on a trivially learnable task.

Task: reward 1 when the completion's first token is a lowercase ASCII letter. Under the byte-level
tokenizer a random-init model spreads its first token over 259 ids, so it starts near 26 / 259 = 10%.
"""

import string

import torch
from test_grpo_trainer import BATCH, make_ctx

from cascadec.contract.plan import Optim, Schedule
from runtime.stages.grpo import GRPOTrainer

torch.set_num_threads(2)

STEPS = 40
THRESHOLD = 0.8


def starts_lowercase(samples, completions):
    return [1.0 if c[:1] in string.ascii_lowercase else 0.0 for c in completions]


def test_grpo_learns_first_token_task(tmp_path):
    ctx = make_ctx(tmp_path, steps=STEPS, rollouts_per_prompt=8, micro_batch=16, max_response=1,
                   optim=Optim(lr=Schedule(peak=1e-2)))
    ctx.rewards["toy"] = starts_lowercase
    trainer = GRPOTrainer(ctx)
    history = [trainer.step(step, BATCH)["reward_mean"] for step in range(STEPS)]
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert first < 0.3, history
    assert last >= THRESHOLD, history
