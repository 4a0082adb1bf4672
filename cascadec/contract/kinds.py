"""The registry of kinds: every stage kind, reward kind and rollout engine, declared once.

The compiler reads it to accept a kind, its keys and their ranges (unregistered names get a located
diagnostic with did-you-mean: CAS302 for a stage kind, CAS305 for a reward kind, CAS200 for an engine); the
runtime reads it to find the implementation; docs/language.md and docs/rewards.md list the docs lines
(`tests/compiler/test_kinds.py` and `tests/cli/test_docs_sync.py` keep code and docs equal). Implementations
are named as lazy ``"module:attr"`` strings (:func:`load`), so the compiler never imports torch. How to add a
kind: docs/CONTRIBUTING.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from cascadec.contract.params import DistillParams, GRPOParams, OfflineDistillParams, SFTParams, StageParamsBase

# ---------------------------------------------------------------- language keys


@dataclass(frozen=True)
class Key:
    """A key users write in a stage: where its value goes (a path inside the stage) and its value type.

    ``kind``: int | float | bool | str | pair | memory | schedule | enum (then ``choices``).
    """

    target: tuple[str, ...]
    kind: str
    choices: tuple[str, ...] = ()


def _param(name: str, kind: str, choices: tuple[str, ...] = ()) -> Key:
    return Key(("params", name), kind, choices)


OVERLONG = ("none", "penalty", "filter", "soft")
# `until train.<metric> >= x`: the prefix that names a training metric instead of a domain's eval
TRAIN_METRICS = "train"
# metrics every trainer's step line carries (runtime.loop adds `lr`, `step_time_s`)
_LOOP_METRICS = ("loss", "grad_norm", "lr", "step_time_s")
_ROLLOUT_METRICS = (*_LOOP_METRICS, "entropy", "response_len", "truncated_frac", "tokens_per_s", "gen_s", "train_s")
MODES = ("thinking", "no_thinking", "none")

# keys every stage kind accepts
COMMON_KEYS: dict[str, Key] = {
    "steps": _param("steps", "int"),
    "epochs": _param("epochs", "float"),
    "lr": Key(("params", "optim", "lr"), "schedule"),
    "warmup": Key(("params", "optim", "lr", "warmup"), "int"),
    "warmup_from": Key(("params", "optim", "lr", "warmup_start"), "float"),
    "betas": Key(("params", "optim", "betas"), "pair"),
    "weight_decay": Key(("params", "optim", "weight_decay"), "float"),
    "grad_clip": Key(("params", "optim", "grad_clip"), "float"),
    "eps": Key(("params", "optim", "eps"), "float"),
    "micro_batch": _param("micro_batch", "int"),
    "mode": Key(("mode",), "enum", MODES),
    "eval_every": Key(("eval_every",), "int"),
    "save_every": Key(("save_every",), "int"),
    "keep": Key(("keep",), "retention"),
    "seed": Key(("seed",), "int"),
    "chat": Key(("chat",), "chat"),
}

# keys of every kind that samples rollouts (`params.RolloutParams`)
ROLLOUT_KEYS: dict[str, Key] = {
    "prompts_per_step": _param("prompts_per_step", "int"),
    "rollouts_per_prompt": _param("rollouts_per_prompt", "int"),
    "temperature": _param("temperature", "float"),
    "top_p": _param("top_p", "float"),
    "top_k": _param("top_k", "int"),
    "max_prompt": _param("max_prompt", "int"),
    "max_response": _param("max_response", "int"),
    "overlong": _param("overlong", "overlong"),
}


# ---------------------------------------------------------------- stage kinds


@dataclass(frozen=True)
class StageKind:
    """One stage kind: ``params`` (its fields, defaults and ranges), the keys the language maps onto them,
    the trainer (``"module:Class"``, a `runtime.stages.Trainer`), whether it takes a ``teachers`` block, whether
    it scores rollouts with its domains' rewards (``rewarded``), its docs line, and the training metrics its
    trainer logs that stop rules may read."""

    name: str
    params: type[StageParamsBase]
    keys: dict[str, Key]
    trainer: str
    doc: str
    teachers: bool = False
    rewarded: bool = False
    metrics: tuple[str, ...] = ()  # training metrics `until train.<metric>` may read (its trainer logs them)

    def all_keys(self) -> dict[str, Key]:
        """Every key valid in a stage (or `defaults` block) of this kind."""
        return {**COMMON_KEYS, **self.keys}


STAGE_KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("sft", SFTParams, {
        "batch_size": _param("batch_size", "int"), "max_seq": _param("max_seq", "int"),
        "packing": _param("packing", "bool"),
    }, "runtime.stages.sft:SFTTrainer",
        "supervised fine-tuning on prompt/completion pairs, loss on assistant tokens only, packing",
        metrics=(*_LOOP_METRICS, "tokens", "fill", "truncated_frac", "tokens_per_s", "train_s")),
    StageKind("grpo", GRPOParams, {
        **ROLLOUT_KEYS, "loss": _param("loss", "enum", ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean")),
        "kl": _param("kl", "float"), "entropy": _param("entropy", "float"),
        "dynamic_filter": _param("dynamic_filter", "bool"),
        "updates_per_step": _param("updates_per_step", "int"), "max_tokens_per_gpu": _param("max_tokens_per_gpu", "int"),
        "clip": _param("clip", "pair"), "dual_clip": _param("dual_clip", "float"),
        "is_correction": _param("is_correction", "enum", ("none", "tis", "icepop")), "is_band": _param("is_band", "pair"),
        "advantage": _param("advantage", "enum", ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline")),
        "kl_estimator": _param("kl_estimator", "enum", ("k1", "k2", "k3")),
        "kl_in": _param("kl_in", "enum", ("loss", "reward")),
        "sampling_budget": _param("sampling_budget", "int"),
        "on_no_signal": _param("on_no_signal", "enum", ("error", "partial", "skip")),
        "no_signal_patience": _param("no_signal_patience", "int"),
    }, "runtime.stages.grpo:GRPOTrainer",
        "GRPO (strict on-policy by default) with PPO-style options: mini-batch updates, clipping, IS correction, "
        "advantage and KL estimators, dynamic sampling with a budget, packing", rewarded=True,
        metrics=(*_ROLLOUT_METRICS, "reward_mean", "reward_std", "kl", "filtered_frac", "zero_std_frac",
                 "informative_frac", "sampling_attempts", "clip_frac", "is_masked_frac", "logp_mismatch")),
    StageKind("distill", DistillParams, {
        **ROLLOUT_KEYS, "loss": _param("loss", "enum", ("mopd", "forward_kl", "reverse_kl", "jsd")),
        "jsd_beta": _param("jsd_beta", "float"), "kl_top_k": _param("kl_top_k", "int"),
        "is_band": _param("is_band", "pair"), "teacher_temperature": _param("teacher_temperature", "float"),
    }, "runtime.stages.distill:DistillTrainer",
        "multi-domain on-policy distillation (MOPD) from per-domain teachers, or a GKD-style KL", teachers=True,
        metrics=(*_ROLLOUT_METRICS, "reverse_kl", "is_ratio", "gated_frac", "filtered_frac", "teacher_s")),
    StageKind("offline_distill", OfflineDistillParams, {
        "batch_size": _param("batch_size", "int"), "max_prompt": _param("max_prompt", "int"),
        "max_response": _param("max_response", "int"), "targets": _param("targets", "enum", ("generations", "data")),
        "kd_weight": _param("kd_weight", "float"), "kd_top_k": _param("kd_top_k", "int"),
        "teacher_temperature": _param("teacher_temperature", "float"),
    }, "runtime.stages.offline_distill:OfflineDistillTrainer",
        "offline distillation: SFT on a teacher's generations (cached) or the data's, mixed with a top-k KD term",
        teachers=True, metrics=(*_LOOP_METRICS, "ce", "kd", "tokens", "cached", "teacher_s", "train_s")),
)}


# ---------------------------------------------------------------- reward kinds


@dataclass(frozen=True)
class Arg:
    """One reward argument. ``kind``: ``any`` (a literal or `field("col")`), ``str``, ``int``, ``bool``,
    ``time`` (seconds, or a time quantity), ``memory`` (bytes, or a memory quantity), ``enum``."""

    kind: str = "any"
    required: bool = False
    choices: tuple[str, ...] = ()
    positional: bool = False  # written first without a name: `reward_model("m")`, `py("m:f")`
    # a model loaded with `from_pretrained`: a local directory or a hub id, checked by the base model's rule
    model: bool = False


_COLUMN = Arg()


@dataclass(frozen=True)
class RewardKind:
    """One reward kind: its arguments (the keyword parameters of ``impl``, a `runtime.rewards.base.Reward`
    class), its docs line. ``parts``: a composite of other rewards (`weighted`, `combined_if_rm`), built by
    `runtime.rewards.build_reward` itself. ``open_args``: extra keyword arguments are passed on (`py`)."""

    name: str
    args: dict[str, Arg]
    impl: str
    doc: str
    parts: bool = False
    open_args: bool = False


REWARD_KINDS: dict[str, RewardKind] = {k.name: k for k in (
    RewardKind("math_verify", {"answer": _COLUMN, "timeout": Arg("time")}, "runtime.rewards.math:MathVerifyReward",
               "1 when HF math-verify finds the completion's final answer equal to the reference"),
    RewardKind("gym", {"name": Arg("str")}, "runtime.rewards.gym:GymReward",
               "the reasoning-gym generator's own answer checker"),
    RewardKind("exact", {"answer": _COLUMN, "normalize": Arg("bool")}, "runtime.rewards.text:ExactReward",
               "1 when the final answer equals the reference string"),
    RewardKind("choice", {"answer": _COLUMN}, "runtime.rewards.text:ChoiceReward",
               "multiple choice: 1 when the chosen letter is the reference"),
    RewardKind("json_schema", {"schema": Arg(required=True)}, "runtime.rewards.text:JsonSchemaReward",
               "1 when the completion is JSON valid under the schema"),
    RewardKind("instructions", {"ids": _COLUMN, "kwargs": _COLUMN, "mode": Arg("enum", choices=("all", "fraction"))},
               "runtime.rewards.instructions:InstructionsReward", "instruction constraints (IFEval taxonomy)"),
    RewardKind("unit_tests", {"tests": Arg(required=True), "timeout": Arg("time"), "memory": Arg("memory"),
                              "mode": Arg("enum", choices=("binary", "fraction")), "prefix": _COLUMN,
                              "entry_point": _COLUMN, "workers": Arg("int"), "packages": Arg(),
                              "sandbox": Arg("enum", choices=("namespaces", "rlimits"))},
               "runtime.rewards.code:UnitTestsReward", "code run against unit tests in a sandbox"),
    RewardKind("reward_model", {"model": Arg("str", required=True, positional=True, model=True),
                                "batch_size": Arg("int"), "max_length": Arg("int")},
               "runtime.rewards.models:RewardModelReward", "a Bradley-Terry scalar reward model"),
    RewardKind("judge", {"model": Arg("str", positional=True, model=True),
                         "mode": Arg("enum", choices=("pairwise", "pointwise")),
                         "pairs": Arg("enum", choices=("all", "circular")), "reference": _COLUMN,
                         "max_new_tokens": Arg("int"), "generate": Arg("str")},
               "runtime.rewards.models:JudgeReward", "a generative judge, pairwise or pointwise"),
    RewardKind("py", {"fn": Arg("str", required=True, positional=True),
                      "contract": Arg("enum", choices=("cascadec", "verl", "trl", "openrlhf"))},
               "runtime.rewards.custom:PyReward",
               "a user function `package.module:function`, called under its framework's contract", open_args=True),
    RewardKind("weighted", {}, "runtime.rewards.combine:Weighted", "a weighted sum of rewards", parts=True),
    RewardKind("combined_if_rm", {}, "runtime.rewards.combine:CombinedIfRm",
               "Nemotron-Cascade 1 IF gate times a sigmoid reward model", parts=True),
    RewardKind("route", {}, "runtime.routing:RoutedReward",
               "each row scored by the reward of its data field's value (`route(field(...), when(...))`)",
               parts=True),
)}


# ---------------------------------------------------------------- rollout engines


@dataclass(frozen=True)
class EngineKind:
    """One rollout engine: ``impl`` is a factory ``(ctx: StageContext) -> RolloutEngine``. ``keyword``: the
    engine is chosen by ``engine = NAME``; otherwise by another key (``rollout = vllm(gpus = N)``)."""

    name: str
    impl: str
    doc: str
    extras: tuple[str, ...] = field(default=())
    keyword: bool = True


ENGINES: dict[str, EngineKind] = {k.name: k for k in (
    EngineKind("hf", "runtime.rollout:hf_engine",
               "transformers `generate` (a static-KV-cache CUDA-graph decoder on CUDA where it applies)"),
    EngineKind("vllm", "runtime.rollout:vllm_engine", "colocated vLLM, weights synced after each step",
               extras=("vllm",)),
    EngineKind("vllm_server", "runtime.rollout:server_engine",
               "a vLLM server on its own GPUs (`rollout = vllm(gpus = N)`) or an `endpoint(...)`, sampling over "
               "HTTP; the policy's weights are reloaded from disk after each step", keyword=False),
)}

#: The engines ``engine = NAME`` can name.
ENGINE_KEYWORDS = tuple(name for name, k in ENGINES.items() if k.keyword)


def load(ref: str) -> Any:
    """The object a ``"module:attr"`` reference names (imported on first use)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
