"""Checkpoints this file does not train: ``checkpoints = { name = model("org/id"), prev = run("../runs/x",
stage = "sft"), local = model("./ckpt") }`` at cascade level.

Each name can be a stage's parent (``grpo(name)``) and a teacher (``teachers { math = name }``). A checkpoint
is a root of the stage graph, like ``base``: always available, never trained here. Its identity
(`cascadec.contract.identity`: path and content hash when local, hub id and cached commit otherwise) is computed once
the spec is checked (:func:`with_identities`) and hashed into the stages that start from it or distil from
it, so a changed checkpoint re-runs exactly those stages.
"""

from __future__ import annotations

import os
from typing import Any

from cascadec import ast
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.contract.identity import identity_of, run_stage_dir
from cascadec.model.calls import _call, _one_string, _resolve, is_hub_id, to_model
from cascadec.model.convert import _bad, to_str
from cascadec.model.inputs import SpecIn
from cascadec.contract.suggest import did_you_mean

#: How to fix a local model that is not there (CAS325).
NOT_FOUND_HINT = "give a directory written by `save_pretrained` (with config.json)"
#: How `model(...)` and `tokenizer = ...` tell a local directory from a hub id (`cascadec.model.calls.is_local`).
LOCAL_NOTE = ("a path starting with `./`, `../`, `/` or `~` is a local directory, resolved from the spec's directory; "
              "other names are hub ids (`name` or `org/name`)")
_EXAMPLE = 'checkpoints = { teacher = model("Qwen/Qwen3-32B"), prev = run("../runs/c1", stage = "sft") }'


def declared(view: ast.SpecView) -> dict[str, ast.Kwarg]:
    """Checkpoint name -> its entry in the cascade's ``checkpoints = { ... }`` record (empty when absent)."""
    for a in view.assigns:
        if a.key.name == "checkpoints" and isinstance(a.value, ast.Record):
            return {e.key.name: e for e in a.value.entries}
    return {}


def _run(call: ast.Call) -> dict[str, Any]:
    path = _one_string(call, "a run directory")
    kwargs = {kw.key.name: kw for kw in call.kwargs}
    for name, kw in kwargs.items():
        if name != "stage":
            raise _bad("CAS301", f"`run(...)` has no argument `{name}`", kw.key.span, label="unknown argument",
                       help=did_you_mean(name, ("stage",), "arguments"))
    if "stage" not in kwargs:
        raise _bad("CAS203", "`run(...)` needs the stage whose final checkpoint to use", call.span,
                   label="no `stage`", help=f'write `run("{path}", stage = "sft")`')
    return {"kind": "run", "name": _resolve(path, call.args[0].span), "stage": to_str(kwargs["stage"].value, "stage")}


def to_checkpoints(v: ast.Value, key: str) -> dict[str, Any]:
    """``{name: ModelRef dict}`` of the ``checkpoints`` record."""
    if not isinstance(v, ast.Record):
        raise _bad("CAS200", "`checkpoints` takes a record of name = model(...) or run(...)", v.span,
                   help=f"write `{_EXAMPLE}`")
    out = {}
    for e in v.entries:
        if isinstance(e.value, ast.Call) and e.value.func.name == "run":
            out[e.key.name] = _run(_call(e.value, "checkpoint", ("run",), 'run("../runs/x", stage = "sft")'))
        else:
            ref = to_model(e.value, e.key.name)
            if ref["kind"] not in ("hub", "path"):
                raise _bad("CAS200", "a checkpoint is a hub id, a local directory or `run(...)`", e.value.span,
                           help=f"write `{_EXAMPLE}`")
            out[e.key.name] = ref
    return out


#: Files of which a tokenizer directory holds at least one (what `AutoTokenizer.from_pretrained` reads).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.json",
                   "vocab.txt")


def has_model(path: str) -> bool:
    """Whether the local directory ``path`` holds a model (its ``config.json``), as the runtime loads it."""
    return os.path.isfile(os.path.join(path, "config.json"))


def has_tokenizer(path: str) -> bool:
    """Whether the local directory ``path`` holds a tokenizer (one of :data:`TOKENIZER_FILES`)."""
    return any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES)


def _hub_fix(what: str, written: ast.Str) -> str:
    """The help for a name the Hub rejects: an existing local directory that loads, else a valid two-part hub id
    spelling (``org//name``, ``-org/name``, ``org/name.`` -> ``org/name``), else the rule itself."""
    name = written.value
    local = "./" + "/".join(p for p in name.split("/") if p)
    if (has_tokenizer if what == "tokenizer" else has_model)(_resolve(local, written.span)):
        return f"did you mean the local directory `{local}`?"
    parts = [p.strip(" .-") for p in name.split("/") if p.strip(" .-")]
    if len(parts) == 2 and is_hub_id(spelled := "/".join(parts)):
        return f"did you mean the hub id `{spelled}`?"
    if name.endswith("/") and is_hub_id(org := name.rstrip("/")):
        return f"name the repository after the `/`: `{org}/NAME`"
    return ("a hub id is `name` or `org/name`, each part of letters, digits, `-`, `_` and `.`, neither starting nor "
            "ending with `-` or `.`, without `--` or `..`, at most 96 characters")


def hub_id_problem(what: str, written: ast.Str, note: str = LOCAL_NOTE) -> Diagnostic | None:
    """CAS325 for a name ``written`` (not local by `cascadec.model.calls.is_local`) that the Hub rejects as a
    repository id (`cascadec.model.calls.is_hub_id`): it would fail at load time. The help names only a fix that
    lints (:func:`_hub_fix`); ``note`` says how names are told apart where ``what`` is read."""
    if is_hub_id(written.value):
        return None
    return make("CAS325", f"{what} `{written.value}` is neither a hub id nor a local directory", written.span,
                label="not a hub id", notes=(note,), help=_hub_fix(what, written))


def shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (as spans are shown), else as is."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _where(ref: dict[str, Any] | Any) -> str:
    return run_stage_dir(ref.name, ref.stage or "") if ref.kind == "run" else ref.name


def with_identities(spec: SpecIn, view: ast.SpecView) -> tuple[SpecIn, list[Diagnostic]]:
    """``spec`` with each checkpoint's identity filled in; CAS325 for a local checkpoint that is missing
    or cannot be read (its content cannot be hashed, so the stages depending on it could not be)."""
    problems, refs, entries = [], {}, declared(view)
    for name, ref in spec.checkpoints.items():
        written = entries[name].value
        span = written.span
        source = written.args[0] if isinstance(written, ast.Call) and written.args else None
        if ref.kind == "hub" and isinstance(source, ast.Str) and (bad := hub_id_problem("checkpoint", source)):
            problems.append(bad)
            continue
        if ref.kind != "hub" and not has_model(_where(ref)):
            problems.append(make("CAS325", f"checkpoint `{name}` has no model at `{shown(_where(ref))}`", span,
                                 label="not found",
                                 help=f"{NOT_FOUND_HINT}, or `run(DIR, stage = ...)` of a finished stage"))
            continue
        try:
            refs[name] = ref.model_copy(update={"identity": identity_of(ref.kind, ref.name, ref.stage)})
        except OSError as e:
            problems.append(make("CAS325", f"checkpoint `{name}` cannot be read: {e.strerror or e}", span,
                                 label="unreadable", help="fix its permissions or the path"))
    if problems:
        return spec, problems
    return spec.model_copy(update={"checkpoints": refs}), []
