"""``StageContext``: everything one stage's trainer needs, built inside the torchrun process.

Also the pieces of the context that have formulas: the AdamW optimizer and the warm-up + decay learning
rate schedule (``lr_at``). See docs/ARCHITECTURE.md, "Stage loop and trainers".
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from cascadec.contract.plan import Optim, Plan, Schedule, Stage
from runtime.data import Sample
from runtime.rewards import Reward
from runtime.rollout.base import RolloutEngine
from runtime.models import ModelLoadError, load_checkpoint, load_model
from runtime.state import BASE, RunDir


if TYPE_CHECKING:
    from runtime.stages import Trainer

PLUGINS_ENV = "CASCADEC_PLUGINS"

# Trainer overrides, filled by plugin modules named in $CASCADEC_PLUGINS (comma-separated, imported by
# runtime.entry before a stage is built): a registered stage kind -> a Trainer class used instead of the one its
# registry entry names (tests use it to swap in a fast toy trainer). New kinds are registry entries
# (`cascadec.contract.kinds`, docs/CONTRIBUTING.md), so that the compiler knows them too.
TRAINER_PLUGINS: dict[str, type[Trainer]] = {}


def load_plugins() -> list[str]:
    """Import the modules named in ``$CASCADEC_PLUGINS``; returns their names."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        importlib.import_module(name)
    return names


def trainer_class(kind: str) -> type[Trainer]:
    """The Trainer class of a stage kind (a plugin's override, else the registry's)."""
    if kind in TRAINER_PLUGINS:
        return TRAINER_PLUGINS[kind]
    from runtime.stages import TRAINERS

    return TRAINERS[kind]


def lr_at(schedule: Schedule, step: int, total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) in a stage of ``total_steps`` steps.

    Linear warm-up from ``warmup_start`` (step 0) to ``peak`` (step ``warmup``), then over the remaining
    steps, reaching ``end`` at the last step ``total_steps - 1``:

    - ``constant``: ``peak`` (``end`` is ignored);
    - ``linear``:   ``peak + (end - peak) * p``;
    - ``cosine``:   ``end + (peak - end) * (1 + cos(pi * p)) / 2`` (SGDR, Loshchilov & Hutter 2017, Eq. 5,
      one cycle without restarts), the schedule of Nemotron-Cascade 2's SFT (Table 7: 5e-5 -> 5e-6, 200
      warm-up steps);

    with ``p = (step - warmup) / (total_steps - 1 - warmup)`` clipped to [0, 1]. ``end`` defaults to 0
    for ``linear``/``cosine``.
    """
    if step < schedule.warmup:
        return schedule.warmup_start + (schedule.peak - schedule.warmup_start) * step / schedule.warmup
    if schedule.kind == "constant":
        return schedule.peak
    end = 0.0 if schedule.end is None else schedule.end
    span = total_steps - 1 - schedule.warmup
    p = 1.0 if span <= 0 else min(1.0, (step - schedule.warmup) / span)
    if schedule.kind == "linear":
        return schedule.peak + (end - schedule.peak) * p
    return end + (schedule.peak - end) * 0.5 * (1.0 + math.cos(math.pi * p))


def build_optimizer(params, optim: Optim) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019) with the plan's betas, eps and decoupled weight decay; lr = peak."""
    trainable = [p for p in params if p.requires_grad]
    devices = {p.device.type for p in trainable}
    return torch.optim.AdamW(
        trainable,
        lr=optim.lr.peak,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        # The fused kernel is one launch per step instead of several per tensor on CUDA
        # (bench/results/gpu-vs-trl.md); on a CPU the foreach path took 7.1 s a step for 128M fp32 parameters
        # on 2 cores against 1.1 s fused (issue 16).
        fused=devices in ({"cuda"}, {"cpu"}),
    )


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule, total_steps: int) -> LambdaLR:
    """A LambdaLR whose lr at step s is ``lr_at(schedule, s, total_steps)``; call ``step()`` once per
    optimizer step, after it."""
    peak = schedule.peak
    return LambdaLR(optimizer, lambda s: lr_at(schedule, s, total_steps) / peak if peak else 0.0)


@dataclass
class StageContext:
    """One stage's world inside one rank of its process group (contract: docs/ARCHITECTURE.md).

    ``policy`` is the accelerate-prepared model (DDP-wrapped when world size > 1; use
    ``accelerator.unwrap_model`` to reach the ``PreTrainedModel``); ``engine`` is filled in after the
    context is built, because ``runtime.rollout.build_engine`` takes the context.
    """

    plan: Plan
    stage: Stage
    run_dir: Path
    accelerator: Any
    device: torch.device
    dtype: torch.dtype
    policy: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    engine: RolloutEngine | None = None
    rewards: dict[str, Reward] = field(default_factory=dict)
    start_step: int = 0
    # (step, attempt) -> this rank's share of a further batch of prompts, for dynamic sampling's extra
    # generation batches (set by runtime.entry from a prompt stream separate from the loop's batches)
    resample: Callable[[int, int], list[Sample]] | None = None
    _frozen: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def rundir(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped_policy(self) -> Any:
        return self.accelerator.unwrap_model(self.policy)

    def load_frozen(self, stage_or_base: str) -> Any:
        """A frozen copy of ``"base"``, a named external checkpoint (``Plan.checkpoints``, verified by
        ``runtime.external``) or a finished stage's ``final/`` checkpoint: eval mode, no grad,
        on this rank's device in the stage dtype. Cached per name. Raises ModelLoadError when the stage has
        no final checkpoint yet."""
        if stage_or_base not in self._frozen:
            if stage_or_base == BASE:
                model, _ = load_model(self.plan.base, dtype=self.dtype, seed=self.plan.seed)
            elif stage_or_base in self.plan.checkpoints:
                from runtime.external import load_external

                model, _ = load_external(stage_or_base, self.plan.checkpoints[stage_or_base], dtype=self.dtype)
            else:
                final = self.rundir.final(stage_or_base)
                if not (final / "config.json").is_file():
                    raise ModelLoadError(
                        f"stage `{stage_or_base}` has no final checkpoint at `{final}`\n"
                        f"help: run stage `{stage_or_base}` first (`cascadec run` runs stages in order)"
                    )
                model, _ = load_checkpoint(final, dtype=self.dtype)
            model.eval().requires_grad_(False)
            self._frozen[stage_or_base] = model.to(self.device)
        return self._frozen[stage_or_base]

    def chat(self, domain: str) -> Any:
        """The ``ChatTemplate`` of ``domain``'s rows in this stage: the cascade's, then the domain's system
        prompt and override, then the stage's override (``runtime.chat.resolve_chat``)."""
        from cascadec.contract.plan import ChatOverride
        from runtime.chat import resolve_chat

        d = self.plan.domains.get(domain)
        system = ChatOverride(system=d.system) if d is not None and d.system else None
        return resolve_chat(self.plan.chat, system, d.chat if d is not None else None, self.stage.chat)

    def system_prompt(self, domain: str) -> str | None:
        return self.chat(domain).system

    def render_prompt(self, sample: Sample) -> str:
        """The full prompt text of ``sample``: chat template (with its overrides), system prompt, every turn of
        a chat-list prompt, and the stage's mode prefix."""
        from runtime.chat import render_prompt

        chat = self.chat(sample.domain)
        return render_prompt(self.tokenizer, chat, self.stage.mode, chat.system, sample.prompt, sample.messages)
