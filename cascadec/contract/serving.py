"""What a vLLM engine or server of a stage must hold, shared by the compiler's memory check (CAS417) and the
runtime that starts the engine (``--max-model-len``)."""

from __future__ import annotations

from cascadec.contract.plan import Plan, Stage

# Prompt budget (tokens) for vLLM's max_model_len when the stage kind has no max_prompt (SFT evals).
DEFAULT_PROMPT_BUDGET = 1024


def max_model_len(plan: Plan, stage: Stage) -> int:
    """Prompt + response tokens vLLM must hold: the stage's own limits, and every eval's."""
    params = stage.params
    prompt = getattr(params, "max_prompt", None) or getattr(params, "max_seq", None) or DEFAULT_PROMPT_BUDGET
    responses = [getattr(params, "max_response", 0)]
    responses += [e.max_tokens for d in plan.domains.values() for e in d.evals]
    return prompt + max(responses)
