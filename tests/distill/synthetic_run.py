"""A small cascade plan with a side branch and a distill stage, and a synthetic run directory of it."""

from __future__ import annotations

import json
from pathlib import Path

from cascadec.contract.plan import (
    Condition,
    DataSource,
    DistillParams,
    Domain,
    EvalSpec,
    GRPOParams,
    ModelRef,
    Optim,
    Plan,
    RewardSpec,
    Schedule,
    SFTParams,
    Stage,
    TeacherRef,
)


def _domain(name: str, eval_name: str) -> Domain:
    data = DataSource(kind="inline", rows=[{"prompt": "1+1", "answer": "2"}])
    return Domain(name=name, train=data, reward=RewardSpec(kind="exact"), evals=[EvalSpec(name=eval_name, data=data)])


def make_plan(teachers: dict[str, TeacherRef] | None = None) -> Plan:
    optim = Optim(lr=Schedule(peak=1e-3))
    teachers = teachers or {
        "math": TeacherRef(kind="best", candidates=["sft", "side"], domain="math", eval="gsm"),
        "default": TeacherRef(kind="stage", stage="rl"),
    }
    stages = [
        Stage(name="sft", kind="sft", parent="base", domains={"math": 0.5, "code": 0.5},
              params=SFTParams(optim=optim, steps=2)),
        Stage(name="side", kind="grpo", parent="sft", domains={"math": 1.0}, params=GRPOParams(optim=optim, steps=2),
              branch=True),
        Stage(name="rl", kind="grpo", parent="sft", domains={"math": 0.5, "code": 0.5},
              params=GRPOParams(optim=optim, steps=2)),
        Stage(name="mopd", kind="distill", parent="rl", domains={"math": 0.5, "code": 0.5},
              params=DistillParams(optim=optim, steps=4), teachers=teachers,
              until=[Condition(kind="threshold", domain="math", eval="gsm", relative_to="math", value=1.0)]),
        Stage(name="after", kind="grpo", parent="mopd", domains={"code": 1.0}, params=GRPOParams(optim=optim, steps=2)),
    ]
    return Plan(name="mini", base=ModelRef(kind="tiny", name="llama"),
                domains={"math": _domain("math", "gsm"), "code": _domain("code", "he")}, stages=stages)


# score of each domain.eval at the end of each stage (base first), as a run would record them
FINAL_SCORES = {
    "base": {"math.gsm": 0.20, "code.he": 0.10},
    "sft": {"math.gsm": 0.50, "code.he": 0.30},
    "side": {"math.gsm": 0.62, "code.he": 0.28},
    "rl": {"math.gsm": 0.41, "code.he": 0.45},
    "mopd": {"math.gsm": 0.60, "code.he": 0.46},
}
STEPS = {"base": 0, "sft": 2, "side": 2, "rl": 2, "mopd": 4}


def write_run(root: Path, plan: Plan, *, upto: str = "mopd", metrics: bool = True) -> Path:
    """A synthetic run directory: plan.json, state.json, evals.jsonl, stages/*/metrics.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.json").write_text(plan.to_json())
    names = list(FINAL_SCORES)
    done = names[: names.index(upto) + 1]
    state = {"stages": {}}
    for s in plan.stages:
        finished = s.name in done
        state["stages"][s.name] = {
            "status": "done" if finished else "pending", "hash": "h-" + s.name, "step": STEPS.get(s.name, 0) if finished else 0,
            "stop_reason": "math.gsm = 0.6 >= 0.6 (teacher(math).gsm = 0.62) at step 4" if s.name == "mopd" else None,
            "checkpoint": f"stages/{s.name}/final" if finished else None,
        }
    (root / "state.json").write_text(json.dumps(state))
    lines = []
    for stage in done:
        if stage == "mopd":  # a mid-stage eval point before the final one
            for key, sc in (("math.gsm", 0.52), ("code.he", 0.44)):
                d, e = key.split(".")
                lines.append({"stage": stage, "step": 2, "domain": d, "eval": e, "metric": "pass@1", "score": sc, "n": 64})
        for key, score in FINAL_SCORES[stage].items():
            d, e = key.split(".")
            lines.append({"stage": stage, "step": STEPS[stage], "domain": d, "eval": e, "metric": "pass@1",
                          "score": score, "n": 64})
    (root / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if metrics:
        for s in plan.stages:
            if s.name not in done:
                continue
            d = root / "stages" / s.name
            d.mkdir(parents=True, exist_ok=True)
            rows = []
            for step in range(STEPS[s.name]):
                row = {"step": step, "loss": 1.0 / (step + 1), "response_len": 10.0 + step, "entropy": 2.0 - 0.1 * step,
                       "tokens_per_s": 100.0}
                if s.kind == "grpo":
                    row["reward_mean"] = 0.2 + 0.1 * step
                    row["kl"] = 0.01 * step
                if s.kind == "distill":
                    row["reverse_kl"] = 0.5 / (step + 1)
                rows.append(row)
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
