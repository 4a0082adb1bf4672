"""Values outside their field's range: the message names the bound a user must meet, the label sits on the
written value, and the help line is about that key."""

from __future__ import annotations

import pytest

from cascadec.compiler import compile_source

SPEC = '''cascade "r" {
  base = model(tiny(llama, hidden_size = 32))
  domain math {
    train  = gym("basic_arithmetic", size = SIZE, seed = 1)
    reward = gym()
    eval held = gym("basic_arithmetic", size = 16, seed = 2) { metric = METRIC  max_tokens = 8 }
  }
  stage sft = sft(base) on math { steps = STEPS  batch_size = 2  lr = 1e-4 }
  stage rl = grpo(sft) on math { steps = 2  prompts_per_step = 2  rollouts_per_prompt = GROUP  lr = 1e-5 }
}
'''
GOOD = {"SIZE": "100", "METRIC": "pass@1", "STEPS": "2", "GROUP": "2"}


def only_error(**values: str):
    text = SPEC
    for name, value in {**GOOD, **values}.items():
        text = text.replace(name, value)
    errors = [d for d in compile_source(text, "r.cascade").diagnostics if d.severity == "error"]
    assert len(errors) == 1, errors
    return errors[0], text.splitlines()


def underlined(diagnostic, lines: list[str]) -> str:
    span = diagnostic.labels[0].span
    return lines[span.line - 1][span.column - 1 : span.end_column - 1]


@pytest.mark.parametrize(
    ("values", "message", "value", "help_has"),
    [
        ({"STEPS": "-3"}, "`steps` must be at least 1, found -3", "-3", "at least one optimizer step"),
        ({"SIZE": "-5"}, "`size` must be at least 1, found -5", "-5", "`size = 2000`"),
        ({"METRIC": "pass@0"}, "the K of `metric = pass@K` or `avg@K` must be at least 1, found 0", "pass@0",
         "`metric = pass@1`"),
        ({"GROUP": "0"}, "`rollouts_per_prompt` must be at least 2, found 0", "0", "at least 2 rollouts"),
    ],
)
def test_range_error_names_the_real_bound_and_points_at_the_value(
    values: dict[str, str], message: str, value: str, help_has: str
) -> None:
    error, lines = only_error(**values)
    assert (error.code, error.message) == ("CAS201", message)
    assert underlined(error, lines) == value
    assert help_has in (error.help or "")
    assert "docs/language.md" not in (error.help or "")


def test_a_distill_stage_is_told_its_own_bound_for_rollouts_per_prompt() -> None:
    """One rollout per prompt is valid for distillation (no group advantage), so 0 is told "at least 1",
    without GRPO's reason."""
    grpo = "stage rl = grpo(sft) on math { steps = 2  prompts_per_step = 2  rollouts_per_prompt = GROUP"
    distill = "stage rl = distill(sft) on math { teachers { default = sft }  steps = 2  rollouts_per_prompt = GROUP"
    text = SPEC.replace(grpo, distill)
    for name, value in {**GOOD, "GROUP": "0"}.items():
        text = text.replace(name, value)
    errors = [d for d in compile_source(text, "r.cascade").diagnostics if d.severity == "error"]
    assert [(d.code, d.message) for d in errors] == [("CAS201", "`rollouts_per_prompt` must be at least 1, found 0")]
    assert "GRPO" not in (errors[0].help or "")
    ok = text.replace("rollouts_per_prompt = 0", "rollouts_per_prompt = 1")
    assert not [d for d in compile_source(ok, "r.cascade").diagnostics if d.severity == "error"]


def test_zero_steps_is_left_to_its_own_check() -> None:
    error, _ = only_error(STEPS="0")
    assert error.code == "CAS401"
