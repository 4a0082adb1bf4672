"""Stage hyper-parameters: one class per stage kind, with the defaults and ranges the language accepts.

These classes are both the plan IR (`Stage.params` in ``plan.json``) and the input model the compiler
validates a spec against (a value out of range is CAS201 at the key that set it), so a default or a range is
written once. Each class is named by a stage kind's entry in `cascadec.contract.kinds`.

Units: lengths are in tokens, learning rates plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Count = Annotated[int, Field(ge=1)]
Whole = Annotated[int, Field(ge=0)]
TopP = Annotated[float, Field(gt=0, le=1)]
Overlong = Literal["none", "penalty", "filter", "soft"]


def _band(band: tuple[float, float]) -> tuple[float, float]:
    # an importance-ratio band keeps tokens with low <= ratio <= high (Nemotron-Cascade 2 §4.4; IcePop)
    if not band[0] < 1.0 < band[1]:
        raise ValueError(f"needs low < 1 < high, got ({band[0]}, {band[1]})")
    return band


Band = Annotated[tuple[float, float], AfterValidator(_band)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Frozen):
    """LR schedule: linear warm-up from ``warmup_start`` over ``warmup`` steps, then ``kind`` to ``end``."""

    peak: Positive
    end: NonNegative | None = None
    kind: Literal["constant", "cosine", "linear"] = "constant"
    warmup: Whole = 0
    warmup_start: NonNegative = 0.0


# the shapes `lr = PEAK -> END KIND` accepts, for the compiler's value and syntax checks
SCHEDULE_KINDS: tuple[str, ...] = get_args(Schedule.model_fields["kind"].annotation)


class Optim(_Frozen):
    """AdamW settings (Loshchilov & Hutter 2019)."""

    lr: Schedule
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    weight_decay: NonNegative = 0.0
    grad_clip: Positive = 1.0
    eps: Positive = 1e-8


class StageParamsBase(_Frozen):
    """What every stage kind's parameters have, and the batch algebra of one optimizer step.

    A step draws ``rows_per_step`` prompts (the language key ``batch_key``) and trains on
    ``rows_per_step × group_size`` sequences (``group_size`` rollouts per prompt; 1 for a kind without
    rollouts). ``needs_targets``: every training row must carry a completion (an answer or a `completion`
    column) to train on.
    """

    kind: str
    optim: Optim
    steps: Whole | None = None
    epochs: Positive | None = None
    micro_batch: Count = 1
    batch_key: ClassVar[str] = "prompts_per_step"
    needs_targets: ClassVar[bool] = False

    def total_steps(self, rows: int) -> int:
        """Optimizer steps of the stage over a training set of ``rows`` rows: ``steps``, or
        ``ceil(epochs * rows / rows_per_step)`` with ``epochs``; with both, the smaller (``steps`` caps)."""
        from_epochs = math.ceil(self.epochs * rows / self.rows_per_step) if self.epochs is not None else None
        if from_epochs is None:
            return self.steps or 0
        return from_epochs if self.steps is None else min(self.steps, from_epochs)

    def steps_label(self) -> str:
        """``steps`` as plan views show it: the count, or the epochs when steps are resolved at run time."""
        if self.epochs is None:
            return str(self.steps)
        cap = f" ≤ {self.steps}" if self.steps is not None else ""
        return f"{self.epochs:g} ep{cap}"

    @property
    def rows_per_step(self) -> int:
        return getattr(self, self.batch_key)

    @property
    def group_size(self) -> int:
        return getattr(self, "rollouts_per_prompt", 1)

    @property
    def sequences_per_step(self) -> int:
        return self.rows_per_step * self.group_size

    def frozen_models(self, teachers: Mapping[str, Any]) -> int:
        """How many frozen models (reference, teachers) a rank holds at least, for the memory estimate."""
        return 0


class SFTParams(StageParamsBase):
    """Supervised fine-tuning on chat-rendered prompt/completion pairs, loss on assistant tokens only."""

    kind: Literal["sft"] = "sft"
    batch_size: Count = 8
    max_seq: Count = 2048
    packing: bool = True
    batch_key: ClassVar[str] = "batch_size"
    needs_targets: ClassVar[bool] = True


class RolloutParams(StageParamsBase):
    """What every kind that samples rollouts from the policy has. ``overlong`` (with its value, buffer and
    factor: `runtime.losses.overlong`) replaces the domains' overlong rule when set."""

    prompts_per_step: Count = 128
    rollouts_per_prompt: Count = 16
    temperature: NonNegative = 1.0
    top_p: TopP = 1.0
    top_k: Whole = 0
    max_prompt: Count = 1024
    max_response: Count = 1024
    overlong: Overlong | None = None
    overlong_value: float = 0.0
    overlong_buffer: Whole = 0
    overlong_factor: Positive = 1.0


class GRPOParams(RolloutParams):
    """GRPO as in Nemotron-Cascade 1/2 (§4.1.2): strict on-policy, group-normalised advantages."""

    kind: Literal["grpo"] = "grpo"
    kl: NonNegative = 0.0
    entropy: NonNegative = 0.0
    loss: Literal["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"] = "token_mean"
    dynamic_filter: bool = False
    # PPO-style update (runtime.stages.policy_update); the defaults are the strict on-policy update
    updates_per_step: Count = 1
    max_tokens_per_gpu: Count | None = None
    clip: tuple[NonNegative, NonNegative] | None = None
    dual_clip: Annotated[float, Field(gt=1)] | None = None
    is_correction: Literal["none", "tis", "icepop"] = "none"
    is_band: Band = (0.5, 2.0)
    advantage: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"] = "grpo"
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    kl_in: Literal["loss", "reward"] = "loss"
    # DAPO dynamic sampling (runtime.dynamic_sampling)
    sampling_budget: Count = 1
    on_no_signal: Literal["error", "partial", "skip"] = "partial"
    no_signal_patience: Whole = 5

    @field_validator("clip")
    @classmethod
    def _clip(cls, clip: tuple[float, float] | None) -> tuple[float, float] | None:
        # PPO's ratio lies in (1 - low, 1 + high): low >= 1 would let the ratio fall to 0 unclipped
        if clip is not None and not clip[0] < 1.0:
            raise ValueError(f"needs (low, high) with 0 <= low < 1, got ({clip[0]}, {clip[1]})")
        return clip

    def frozen_models(self, teachers: Mapping[str, Any]) -> int:
        return 1 if self.kl > 0 else 0  # the KL reference


class DistillParams(RolloutParams):
    """Multi-domain on-policy distillation (Nemotron-Cascade 2 §4.4) or a GKD-style KL variant."""

    kind: Literal["distill"] = "distill"
    rollouts_per_prompt: Count = 4
    loss: Literal["mopd", "forward_kl", "reverse_kl", "jsd"] = "mopd"
    jsd_beta: Annotated[float, Field(ge=0, le=1)] = 0.5
    kl_top_k: Whole = 0
    is_band: Band = (0.5, 2.0)
    teacher_temperature: Positive = 1.0

    @property
    def student_temperature(self) -> float:
        """The temperature the student's log-probs are taken at: the sampling one, or 1 for greedy sampling
        (T = 0), whose recorded log-probs are the untempered model's (``runtime.rollout.hf``)."""
        return self.temperature if self.temperature > 0 else 1.0

    def self_taught(self, parent: str, teachers: Iterable[str]) -> bool:
        """Whether every teacher checkpoint (``teachers``) is the student's own start ``parent``, scored at the
        student's temperature: then every divergence the stage can minimise (MOPD's sampled reverse KL, the
        exact forward and reverse KL, JSD, each also over a top-k renormalisation) is 0 with a zero gradient,
        and there is nothing to learn. A teacher scored at another temperature is a sharpened or flattened
        copy, which there is."""
        return set(teachers) == {parent} and self.teacher_temperature == self.student_temperature

    def frozen_models(self, teachers: Mapping[str, Any]) -> int:
        # distinct fixed teachers; a `best(...)` route loads one candidate, which may be a fixed teacher
        fixed = {t.stage for t in teachers.values() if t.kind == "stage"}
        chosen = any(t.kind == "best" for t in teachers.values())
        return max(len(fixed), 1 if chosen else 0)


class OfflineDistillParams(StageParamsBase):
    """Offline distillation: SFT on a teacher's tokens (its generations, computed once and cached, or the data's
    completions) with a top-k KD term (`runtime.stages.offline_distill`)."""

    kind: Literal["offline_distill"] = "offline_distill"
    batch_size: Count = 8
    max_prompt: Count = 1024
    max_response: Count = 1024
    targets: Literal["generations", "data"] = "generations"
    kd_weight: Annotated[float, Field(ge=0, le=1)] = 0.5
    kd_top_k: Count = 64
    teacher_temperature: NonNegative = 1.0
    batch_key: ClassVar[str] = "batch_size"

    @model_validator(mode="after")
    def _kd_needs_a_temperature(self) -> "OfflineDistillParams":
        # the KD term compares distributions at the teacher's temperature; 0 (greedy generation) has none
        if self.kd_weight > 0 and self.teacher_temperature == 0:
            raise ValueError("`kd_weight > 0` needs `teacher_temperature > 0` (0 only for greedy generations "
                             "with `kd_weight = 0`)")
        return self

    def frozen_models(self, teachers: Mapping[str, Any]) -> int:
        return len({t.stage for t in teachers.values() if t.kind == "stage"}) or 1

