"""Content hashes of a plan: the one place they are computed (docs/ARCHITECTURE.md, "Run directory").

The compiler calls :func:`hash_plan` once, while lowering, and writes the hashes into ``plan.json``; the
runtime only reads them. A plan built by hand (tests, scripts) has empty hashes and gets them from this same
function (:func:`ensure_hashes`), so both sides always agree.

- ``Stage.hash`` (training hash) covers what determines a stage's weights: its own fields (without origin,
  hashes and branch), the training side of its domains (data, reward, overlong policy, system prompt; not their
  evals, but the data of the evals a decontaminated domain drops its rows against), the base model, the chat
  template, its parent's and teachers' hashes, and the evals its ``until`` rules read, as in a build system.
  The evals of ``best(... by d.e)`` teachers are hashed apart (:func:`choice_hash`): the runtime re-resolves
  such a choice after they change and retrains only when the chosen checkpoint changed.
- ``Stage.eval_hash``: the training hash plus every domain's evals, reward and system prompt (evals score
  every domain after every stage), so an eval-only edit re-evaluates a finished stage instead of retraining it.
- ``Plan.base_eval_hash``: what the base-model evals depend on (base model, chat template, seed, every
  domain's evals, reward and system prompt, the first stage's resources).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from cascadec.contract.kinds import REWARD_KINDS
from cascadec.contract.plan import Domain, Plan, Resources, Stage

# a reward's arguments that name a model: a local one is an absolute path in the plan (`cascadec.model.calls`)
_MODEL_ARGS = {k.name: {n for n, a in k.args.items() if a.model} for k in REWARD_KINDS.values()}


def content_hash(payload: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``payload`` (sorted keys, no spaces)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _portable(data: Any, root: str | None) -> Any:
    """``data`` without origins and, when ``root`` is given, with absolute ``path`` values made relative to
    it, so that a hash does not change when the checkout moves (the plan itself keeps absolute paths)."""
    if isinstance(data, dict):
        kind = data.get("kind") if isinstance(data.get("kind"), str) else None
        # a local model (`ModelRef` of kind `path`) keeps its path in `name`
        path_keys = {"path", "name"} if kind in ("path", "run") else {"path"}
        out = {k: _relative(v, root) if k in path_keys else _portable(v, root)
               for k, v in data.items() if k != "origin"}
        models = _MODEL_ARGS.get(kind or "", set())
        if models and isinstance(out.get("args"), dict):
            out["args"] = {k: _relative(v, root) if k in models else v for k, v in out["args"].items()}
        return out
    if isinstance(data, list):
        return [_portable(v, root) for v in data]
    return data


def _relative(value: Any, root: str | None) -> Any:
    if root and isinstance(value, str) and os.path.isabs(value):
        return os.path.relpath(value, root)
    return _portable(value, root)


# GPU-role fields (issue 17) enter a hash only when set, so that plans that do not use them keep the hashes
# they had, and their finished stages are not run again
_ROLE_FIELDS = ("node_gpus", "tensor_parallel", "rollout", "teacher_servers")


# server fields added later, in a hash only when set (a server on the training nodes keeps its hash)
_OPTIONAL_SERVER_FIELDS = {"nodes": 0}


def _server(s: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if not (k in _OPTIONAL_SERVER_FIELDS and v == _OPTIONAL_SERVER_FIELDS[k])}


def _resources(r: Resources) -> dict[str, Any]:
    default = Resources()
    out = r.model_dump(mode="json", exclude={f for f in _ROLE_FIELDS if getattr(r, f) == getattr(default, f)})
    if out.get("rollout"):
        out["rollout"] = _server(out["rollout"])
    if "teacher_servers" in out:
        out["teacher_servers"] = {n: _server(s) for n, s in out["teacher_servers"].items()}
    return out


# stage fields added after plans were hashed, left out of the hash while empty for the same reason
_OPTIONAL_STAGE_FIELDS = ("teacher_weights",)


def _stage_fields(stage: Stage) -> dict[str, Any]:
    unset = {f for f in _OPTIONAL_STAGE_FIELDS if not getattr(stage, f)}
    return stage.model_dump(mode="json", exclude={"origin", "hash", "eval_hash", "branch", "resources", *unset})


def _training_side(domain: Domain) -> dict[str, Any]:
    """What of ``domain`` decides the rows a stage trains on. Its evals do not, unless it is decontaminated
    against them: then their data does (which rows are dropped), their metrics and sampling still do not. Off,
    the key is left out so that the hashes of plans written before it existed do not change."""
    out = domain.model_dump(mode="json", exclude={"evals", "decontaminate"})
    if domain.decontaminate:
        out["decontaminate"] = [e.data.model_dump(mode="json") for e in domain.evals]
    return out


def _training_payload(plan: Plan, stage: Stage, done: dict[str, str], trained: dict[str, str],
                      root: str | None) -> dict[str, Any]:
    reads = {f"{d}.{e}": plan.domains[d].eval_inputs({e}) for d, e in sorted(stage.until_evals())
             if d in plan.domains}
    return {
        "stage": {**_stage_fields(stage), "resources": _resources(stage.resources)},
        "domains": {k: trained[k] for k in sorted(stage.domains) if k in plan.domains},
        "reads": _portable(reads, root),
        "base": _portable(plan.base.model_dump(mode="json"), root),
        "chat": plan.chat.model_dump(mode="json"),
        "parent": done.get(stage.parent),
        "teachers": {d: done.get(d) for d in sorted(stage.dependencies() - {"base"})},
    }


def _base_eval_payload(plan: Plan, root: str | None) -> dict[str, Any]:
    return {
        "base": _portable(plan.base.model_dump(mode="json"), root), "chat": plan.chat.model_dump(mode="json"),
        "seed": plan.seed,
        "domains": {n: _portable(d.eval_inputs(), root) for n, d in sorted(plan.domains.items())},
        "resources": _resources(plan.stages[0].resources) if plan.stages else None,
    }


def hash_plan(plan: Plan, root: str | None = None) -> Plan:
    """``plan`` with every ``Stage.hash``, ``Stage.eval_hash`` and ``Plan.base_eval_hash`` filled in.

    ``plan.stages`` must be in topological order (a stage's parent and teachers come first), as the compiler
    writes them. ``root``: the spec's directory; absolute data and model paths are hashed relative to it.
    """
    # Each domain is hashed once and the stages hash the digests: hashing the data per stage made a spec with
    # long inline data cost stages x data.
    every_eval = content_hash({k: _portable(d.eval_inputs(), root) for k, d in sorted(plan.domains.items())})
    trained = {k: content_hash(_portable(_training_side(d), root)) for k, d in plan.domains.items()}
    # a named checkpoint stands in the hashes of its dependants by its identity (path and content hash)
    done: dict[str, str] = {n: content_hash(_portable(ref.model_dump(mode="json"), root))
                            for n, ref in plan.checkpoints.items()}
    stages = []
    for stage in plan.stages:
        digest = content_hash(_training_payload(plan, stage, done, trained, root))
        done[stage.name] = digest
        stages.append(stage.model_copy(update={
            "hash": digest, "eval_hash": content_hash({"hash": digest, "evals": every_eval})}))
    return plan.model_copy(update={"stages": stages, "base_eval_hash": content_hash(_base_eval_payload(plan, root))})


def ensure_hashes(plan: Plan) -> Plan:
    """``plan`` itself when the compiler hashed it, else ``hash_plan(plan)`` (a plan built by hand)."""
    if plan.base_eval_hash and all(s.hash and s.eval_hash for s in plan.stages):
        return plan
    return hash_plan(plan)


def choice_hash(plan: Plan, stage: Stage) -> str:
    """What the ``best(... by d.e)`` teacher choices of ``stage`` are read from: the specs of those evals
    (their scores are measured after each candidate finishes). Empty when the stage has no such teacher."""
    pairs = sorted(stage.choice_evals())
    if not pairs:
        return ""
    return content_hash({f"{d}.{e}": _portable(plan.domains[d].eval_inputs({e}), None) for d, e in pairs
                         if d in plan.domains})
