"""CAS421 (a step that draws a domain's rows twice), CAS415's bounds on a step, and CAS400's hints, each of which
must pass lint itself."""

from __future__ import annotations

import re

import pytest

from cascadec.compiler import compile_source
from runtime.data import MixtureSampler

from tests.compiler.compiler_helpers import SHIPPED

BATCH_CODES = {"CAS400", "CAS415", "CAS421"}


def _spec(stage: str, rows: int = 3) -> str:
    data = ", ".join(f'{{prompt = "{i}+1", answer = "{i + 1}"}}' for i in range(rows))
    return (f'cascade "b" {{\n  base = model(tiny(llama))\n'
            f'  domain math {{ train = inline([{data}])  reward = exact() }}\n'
            f'  domain big {{ train = gym("basic_arithmetic", size = 1000)  reward = gym() }}\n  {stage}\n}}\n')


def _codes(source: str) -> list[str]:
    return [d.code for d in compile_source(source, "b.cascade").diagnostics]


@pytest.mark.parametrize("stage", [
    "stage s = grpo(base) on math { steps = 1  lr = 1e-6  prompts_per_step = 1000000000 }",
    "stage s = grpo(base) on math { steps = 1  lr = 1e-6  prompts_per_step = 4  rollouts_per_prompt = 2 }",
    "stage s = sft(base) on [math] { steps = 1  lr = 1e-6  batch_size = 64 }",
    "stage s = sft(base) on [math: 1, big: 1] { steps = 1  lr = 1e-6  batch_size = 8 }",
])
def test_a_step_that_draws_more_rows_than_the_domain_has_is_flagged(stage: str) -> None:
    assert "CAS421" in _codes(_spec(stage))


@pytest.mark.parametrize("stage", [
    "stage s = grpo(base) on math { steps = 1  lr = 1e-6  prompts_per_step = 3 }",
    "stage s = sft(base) on [math: 1, big: 1] { steps = 1  lr = 1e-6  batch_size = 7 }",
    "stage s = grpo(base) on big { steps = 1  lr = 1e-6  prompts_per_step = 1000 }",
    # a default batch on a few inline test rows is left alone
    "stage s = grpo(base) on math { steps = 1  lr = 1e-6 }",
])
def test_a_step_within_the_rows_is_not_flagged(stage: str) -> None:
    assert "CAS421" not in _codes(_spec(stage))


@pytest.mark.parametrize("weights, rows", [((1, 1), 3), ((1, 3), 1), ((0.3, 0.7), 5), ((2, 1), 4)])
def test_the_help_bound_is_the_runtime_samplers(weights: tuple[float, float], rows: int) -> None:
    """With the largest batch the help gives, some steps of the runtime's sampler draw no row of `math` twice
    (a step gets `floor(share × batch)` rows of a domain, or one more); with one row more, every step does."""
    stage = (f"stage s = sft(base) on [math: {weights[0]}, big: {weights[1]}] {{ steps = 1  lr = 1e-6  "
             "batch_size = 1000 }")
    diag = next(d for d in compile_source(_spec(stage, rows), "b.cascade").diagnostics if d.code == "CAS421")
    most = int(re.search(r"batch_size = (\d+)", diag.help).group(1))
    data = {"math": list(range(rows)), "big": list(range(1000))}
    for batch, fits in ((most, True), (most + 1, False)):
        sampler = MixtureSampler(data, {"math": weights[0], "big": weights[1]}, batch, seed=0)
        counts = [sampler.counts(step)["math"] for step in range(50)]
        assert min(counts) <= rows if fits else min(counts) > rows


@pytest.mark.parametrize("stage", [
    "stage s = grpo(base) on math { steps = 1  lr = 1e-6  prompts_per_step = 2  rollouts_per_prompt = 4  "
    "micro_batch = 64 }",
    "stage s = grpo(base) on math { steps = 1  lr = 1e-6  prompts_per_step = 3  rollouts_per_prompt = 3  "
    "resources { gpus = 2 } }",
    "stage s = grpo(base) on big { steps = 1  lr = 1e-6  prompts_per_step = 7  rollouts_per_prompt = 3  "
    "resources { gpus = 4 } }",
    "stage s = sft(base) on [big] { steps = 1  lr = 1e-6  batch_size = 8  micro_batch = 1e15 }",
    "stage s = sft(base) on [math] { steps = 1  lr = 1e-6  batch_size = 3  micro_batch = 2 }",
])
def test_every_cas400_suggestion_passes_lint(stage: str) -> None:
    source = _spec(stage)
    diag = next(d for d in compile_source(source, "b.cascade").diagnostics if d.code == "CAS400")
    assert diag.help.startswith("valid alternatives: "), diag.help
    tried = 0
    for part in diag.help.removeprefix("valid alternatives: ").split("; "):
        key, values = re.fullmatch(r"`(\w+)` = (.+)", part).groups()
        for value in re.split(r", | or ", values):
            changed = re.sub(rf"\b{key} = \S+", f"{key} = {value}", source) if f"{key} = " in source \
                else source.replace("steps = 1 ", f"steps = 1  {key} = {value} ")
            assert not BATCH_CODES & set(_codes(changed)), (key, value)
            tried += 1
    assert tried


@pytest.mark.parametrize("stage, code", [
    ("stage s = grpo(base) on big { steps = 1  lr = 1e-6  rollouts_per_prompt = 100000 }", "CAS415"),
    ("stage s = grpo(base) on big { steps = 1  lr = 1e-6  prompts_per_step = 1000  rollouts_per_prompt = 1024 }",
     "CAS415"),
    ("stage s = grpo(base) on big { steps = 1  lr = 1e-6  prompts_per_step = 1000  rollouts_per_prompt = 64 }", None),
])
def test_groups_and_steps_far_above_any_recipe_are_flagged(stage: str, code: str | None) -> None:
    codes = _codes(_spec(stage))
    assert (code in codes) if code else not BATCH_CODES & set(codes)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_no_shipped_spec_trips_the_batch_checks(path) -> None:
    from cascadec.compiler import compile_file
    assert not BATCH_CODES & {d.code for d in compile_file(str(path)).diagnostics}
