"""Reward library: `build_reward(RewardSpec) -> Reward`, one float per completion.

Every kind is an entry of `cascadec.contract.kinds.REWARD_KINDS` naming its class, imported only when a spec
uses it (a math-only run never imports torch or the sandbox). `docs/rewards.md` documents each kind and its arguments.
"""

from __future__ import annotations

import inspect
from typing import Any

from cascadec.contract.kinds import REWARD_KINDS, load
from cascadec.contract.plan import Domain, RewardSpec
from cascadec.contract.suggest import did_you_mean
from runtime.rewards.base import Reward, RewardError

__all__ = ["Reward", "RewardError", "build_reward"]


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
    elif spec.kind == "route":
        from runtime.routing import RoutedReward

        keys = list(spec.args.get("keys", []))
        routes = dict(zip(keys, (build_reward(p, domain=domain) for p in spec.parts)))
        reward = RoutedReward(spec.args["by"], routes, dict(zip(keys, spec.weights)), origin=spec.origin)
    elif spec.kind in REWARD_KINDS:
        reward = _construct(load(REWARD_KINDS[spec.kind].impl), spec, dict(spec.args))
    else:
        raise RewardError(f"unknown reward kind `{spec.kind}`", hint=did_you_mean(spec.kind, REWARD_KINDS, "kinds"),
                          origin=spec.origin)
    if spec.code_switch_penalty is not None:
        reward = CodeSwitchPenalty(reward, spec.code_switch_penalty)
    return reward
