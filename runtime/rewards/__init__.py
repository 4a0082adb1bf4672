"""Reward library: `build_reward(RewardSpec) -> Reward`, one float per completion.

Every kind lives in its own module and is imported only when a spec uses it (a math-only run never imports
torch or the sandbox). `docs/rewards.md` documents each kind and its arguments.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from cascadec.contract.plan import Domain, RewardSpec
from runtime.rewards.base import Reward, RewardError

__all__ = ["KINDS", "Reward", "RewardError", "build_reward"]

# kind -> (module, class); the class's keyword parameters are the kind's arguments. The compiler names
# positional arguments (`reward_model("m")` -> `model`, `judge("m")` -> `model`, `py("m:f")` -> `fn`).
KINDS: dict[str, tuple[str, str]] = {
    "math_verify": ("runtime.rewards.math", "MathVerifyReward"),
    "gym": ("runtime.rewards.gym", "GymReward"),
    "exact": ("runtime.rewards.text", "ExactReward"),
    "choice": ("runtime.rewards.text", "ChoiceReward"),
    "json_schema": ("runtime.rewards.text", "JsonSchemaReward"),
    "instructions": ("runtime.rewards.instructions", "InstructionsReward"),
    "unit_tests": ("runtime.rewards.code", "UnitTestsReward"),
    "reward_model": ("runtime.rewards.models", "RewardModelReward"),
    "judge": ("runtime.rewards.models", "JudgeReward"),
    "py": ("runtime.rewards.custom", "PyReward"),
}
COMPOSITE = ("weighted", "combined_if_rm")


def _construct(cls: type, spec: RewardSpec, args: dict[str, Any]) -> Reward:
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    known = [n for n, p in params.items() if n != "origin" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [a for a in args if a == "origin" or (a not in params and not accepts_any)]
    if unknown:
        raise RewardError(f"reward `{spec.kind}` has no argument `{unknown[0]}`",
                          hint="arguments: " + ", ".join(f"`{k}`" for k in known), origin=spec.origin)
    missing = [n for n in known if params[n].default is inspect.Parameter.empty and n not in args]
    if missing:
        raise RewardError(f"reward `{spec.kind}` needs argument `{missing[0]}`",
                          hint=f"write {spec.kind}({missing[0]} = ...)", origin=spec.origin)
    return cls(**args, origin=spec.origin)


def build_reward(spec: RewardSpec, *, domain: Domain | None = None) -> Reward:
    """Build the reward a spec describes.

    Args:
        spec: the plan's reward (kind, args with `{"field": x}` column references, parts, weights).
        domain: the domain that owns it, used only to point error messages at its span.

    Returns:
        A callable `(samples, completions) -> list[float]`, one float per completion; the code-switch
        penalty is applied on top when `spec.code_switch_penalty` is set.

    Raises:
        RewardError: unknown kind, bad or missing argument, an import that does not resolve; the message
            names the reward and carries its origin.
    """
    from runtime.rewards.combine import CodeSwitchPenalty, CombinedIfRm, Weighted

    if spec.origin is None and domain is not None and domain.origin is not None:
        spec = spec.model_copy(update={"origin": domain.origin})
    if spec.kind == "weighted":
        reward: Reward = Weighted([build_reward(p, domain=domain) for p in spec.parts], list(spec.weights),
                                  origin=spec.origin)
    elif spec.kind == "combined_if_rm":
        if len(spec.parts) != 2:
            raise RewardError("reward `combined_if_rm` needs two parts: an instruction reward and a reward model",
                              hint="write combined_if_rm(instructions(...), reward_model(\"path\"))",
                              origin=spec.origin)
        reward = CombinedIfRm(*(build_reward(p, domain=domain) for p in spec.parts))
    elif spec.kind in KINDS:
        module, name = KINDS[spec.kind]
        cls = getattr(importlib.import_module(module), name)
        reward = _construct(cls, spec, dict(spec.args))
    else:
        from cascadec.contract.suggest import suggest

        close = suggest(spec.kind, [*KINDS, *COMPOSITE])
        raise RewardError(f"unknown reward kind `{spec.kind}`",
                          hint=f"did you mean `{close}`?" if close else
                          "kinds: " + ", ".join(f"`{k}`" for k in [*KINDS, *COMPOSITE]),
                          origin=spec.origin)
    if spec.code_switch_penalty is not None:
        reward = CodeSwitchPenalty(reward, spec.code_switch_penalty)
    return reward
