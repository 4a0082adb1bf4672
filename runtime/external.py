"""Checkpoints this cascade does not train (``Plan.checkpoints``): loading them as a stage's parent or a
teacher, after checking that they are what the plan was compiled against (``cascadec.contract.identity``).

A local directory or another run's stage whose content changed since compiling is refused: its identity is
in the stage hashes, so recompiling (``cascadec run spec.cascade`` does) re-runs exactly the stages that
depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cascadec.contract.identity import identity_of, run_stage_dir
from cascadec.contract.plan import ModelRef
from runtime.models import ModelLoadError, load_checkpoint, load_model
from runtime.state import RunDir, StateError


def describe(name: str, ref: ModelRef) -> str:
    where = f"stage `{ref.stage}` of run `{ref.name}`" if ref.kind == "run" else f"`{ref.name}`"
    return f"checkpoint `{name}` ({where})"


def checkpoint_dir(name: str, ref: ModelRef) -> str:
    """The directory (or hub id) to load ``ref`` from.

    Raises:
        ModelLoadError: another run's stage that has not finished.
    """
    if ref.kind != "run":
        return ref.name
    try:
        status = RunDir(ref.name).read_state()["stages"].get(ref.stage or "", {}).get("status", "absent")
    except (OSError, StateError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{describe(name, ref)}: cannot read that run's state: {e}\n"
                             "help: point `run(...)` at a run directory written by `cascadec run`") from None
    if status != "done":
        raise ModelLoadError(f"{describe(name, ref)} has not finished (status `{status}`)\n"
                             "help: finish that run first, or name another checkpoint")
    return run_stage_dir(ref.name, ref.stage or "")


def verify(name: str, ref: ModelRef) -> None:
    """Check that a local checkpoint still has the identity the plan was compiled with.

    Raises:
        ModelLoadError: the content changed (or cannot be read) since compiling.
    """
    if ref.kind == "hub" or not ref.identity:
        return
    try:
        now = identity_of(ref.kind, ref.name, ref.stage)
    except OSError as e:
        raise ModelLoadError(f"{describe(name, ref)} cannot be read: {e}\nhelp: restore it or fix the spec") from None
    if now != ref.identity:
        raise ModelLoadError(
            f"{describe(name, ref)} changed since the plan was compiled ({ref.identity[:19]}... -> {now[:19]}...)\n"
            "help: recompile (`cascadec run SPEC.cascade` compiles first), so that the stages that start from it "
            "or distil from it run again")


def verify_all(checkpoints: Mapping[str, ModelRef], error: type[Exception] = ModelLoadError) -> None:
    """:func:`verify` every named checkpoint before a run starts.

    A changed one (a teacher retrained elsewhere) would leave the stages that depend on it looking finished
    and unchanged, since its identity is in their hashes as compiled; recompiling re-runs exactly them.

    Raises:
        error: naming the first changed checkpoint, with the command that recompiles.
    """
    for name, ref in sorted(checkpoints.items()):
        try:
            verify(name, ref)
        except ModelLoadError as e:
            raise error(str(e)) from None


def load_external(name: str, ref: ModelRef, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) of a named external checkpoint, verified first; the model is in train mode.

    Raises:
        ModelLoadError: unfinished, changed or unloadable.
    """
    verify(name, ref)
    if ref.kind == "hub":
        return load_model(ref, dtype=dtype)
    return load_checkpoint(checkpoint_dir(name, ref), dtype=dtype)


def external_tokenizer(name: str, ref: ModelRef) -> Any:
    """The tokenizer saved with an external checkpoint."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(checkpoint_dir(name, ref), local_files_only=ref.kind != "hub")
    except Exception as e:
        raise ModelLoadError(f"cannot load the tokenizer of {describe(name, ref)}: {e}") from None
