"""Semantic checks. Each check is ``(module, ctx) -> Iterable[Diagnostic]``.

Checks run in phases (`PHASES`); a phase runs only when the phases before it found no error, so that
(for example) the teacher check never sees a stage graph with a cycle. `MODEL_CHECKS` run on the validated
typed model (`ctx.spec`), after `cascadec.model.build`.
"""

from __future__ import annotations

from typing import Callable, Iterable

from cascadec import ast
from cascadec.checks.base_model import check_base_model, check_reward_models
from cascadec.checks.batch_rows import check_rows_per_step
from cascadec.checks.context import CheckContext
from cascadec.checks.data import check_data
from cascadec.checks.graph import check_cycles, check_teachers
from cascadec.checks.gym import check_gym
from cascadec.checks.data_build import check_data_builds
from cascadec.checks.fields import check_reward_fields
from cascadec.checks.gym_build import check_gym_configs
from cascadec.checks.lengths import check_lengths
from cascadec.checks.memory import check_memory
from cascadec.checks.memory_plan import check_memory_plan
from cascadec.checks.names import check_names, check_rewards
from cascadec.checks.options import check_options
from cascadec.checks.plausible import check_plausible
from cascadec.checks.reserved import check_reserved
from cascadec.checks.routing import check_routes
from cascadec.checks.rules import check_distill_overlong, check_self_taught
from cascadec.checks.tokenizers import check_tokenizers
from cascadec.checks.servers import check_servers
from cascadec.checks.semantics import (check_batch, check_eval_sampling, check_greedy_rollouts, check_groups,
                                       check_modes, check_steps, check_until_evals, check_until_ranges, check_warmup)
from cascadec.checks.structure import check_duplicates, check_keys, check_structure
from cascadec.checks.tiny_build import check_tiny_configs
from cascadec.diagnostics import Diagnostic

Check = Callable[[ast.Module, CheckContext], Iterable[Diagnostic]]

PHASES: tuple[tuple[Check, ...], ...] = (
    (check_structure,),
    (check_duplicates, check_reserved, check_keys, check_names, check_rewards, check_gym, check_cycles),
    (check_teachers,),
)

MODEL_CHECKS: tuple[Check, ...] = (check_steps, check_groups, check_batch, check_rows_per_step, check_modes,
                                   check_until_evals, check_eval_sampling, check_until_ranges, check_greedy_rollouts,
                                   check_warmup, check_lengths, check_memory, check_memory_plan, check_data,
                                   check_options, check_plausible, check_distill_overlong, check_self_taught,
                                   check_routes, check_tokenizers, check_servers, check_base_model,
                                   check_reward_models, check_reward_fields)

#: Checks that build what the run will build (seconds: reasoning-gym's and transformers' imports, reading data
#: files); `compile_file(build_data=True)`.
BUILD_CHECKS: tuple[Check, ...] = (check_gym_configs, check_data_builds, check_tiny_configs)

__all__ = ["BUILD_CHECKS", "CheckContext", "MODEL_CHECKS", "PHASES", "Check"]
