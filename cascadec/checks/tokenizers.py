"""Teacher and student tokenizers compared at compile time when both are local directories (CAS326).

A stage's tokenizer is that of the root of its parent chain: the base model, or a named checkpoint
(`cascadec.checkpoints`). Each distill teacher's root is compared with the student's root by their
``tokenizer.json`` vocabularies (with added tokens) and the special tokens of ``tokenizer_config.json``.
Embedding matrices are not compared: a checkpoint padded to a multiple of 64 or 128 rows has extra ids no
tokenizer emits, which is harmless. Hub ids, packaged and tiny models are compared by the runtime
(`runtime.teachers.check_tokenizers`) when the stage starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from cascadec import ast
from cascadec.checkpoints import shown
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.contract.identity import run_stage_dir

_SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token")


def _root(name: str, parent_of: dict[str, str]) -> str:
    seen = set()
    while name in parent_of and name not in seen:
        seen.add(name)
        name = parent_of[name]
    return name


def _directory(ctx: CheckContext, root: str) -> str | None:
    assert ctx.spec is not None
    ref = ctx.spec.base if root == "base" else ctx.spec.checkpoints.get(root)
    if ref is None or ref.kind not in ("path", "run"):
        return None
    if ref.kind == "path" and ref.tokenizer is not None:
        return ref.tokenizer if os.path.isdir(ref.tokenizer) else None
    return run_stage_dir(ref.name, ref.stage or "") if ref.kind == "run" else ref.name


def _text(token: Any) -> Any:
    return token.get("content") if isinstance(token, dict) else token


def fingerprint(directory: str) -> dict[str, Any] | None:
    """What decides token ids: vocabulary (with added tokens) and special tokens; None when not readable."""
    try:
        with open(os.path.join(directory, "tokenizer.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    vocab = (data.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, list):  # a Unigram model lists [token, score] pairs in id order
        vocab = {entry[0]: i for i, entry in enumerate(vocab)}
    vocab = {**vocab, **{t["content"]: t["id"] for t in data.get("added_tokens", []) if "content" in t}}
    try:
        with open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    return {"vocab": vocab, "special": {k: _text(config.get(k)) for k in _SPECIAL}}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    if a["vocab"] != b["vocab"]:
        differ = sorted(t for t in set(a["vocab"]) | set(b["vocab"]) if a["vocab"].get(t) != b["vocab"].get(t))
        shown = ", ".join(f"`{t}`" for t in differ[:3])
        out.append(f"vocabularies differ ({len(a['vocab'])} vs {len(b['vocab'])} tokens; {len(differ)} ids differ, "
                   f"e.g. {shown})")
    out += [f"`{k}` differs ({a['special'][k]!r} vs {b['special'][k]!r})" for k in _SPECIAL
            if a["special"][k] != b["special"][k]]
    return out


def _teachers(st: Any) -> set[str]:
    return {n for t in st.teachers.values() for n in ([t.stage] if t.kind == "stage" else t.candidates) if n}


def check_tokenizers(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS326 for each distill teacher whose local tokenizer differs from its student's."""
    assert ctx.spec is not None
    parent_of = {st.name: st.parent for st in ctx.spec.stages}
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        student = _root(st.name, parent_of)
        mine = _directory(ctx, student)
        if not st.teachers or mine is None or (ours := fingerprint(mine)) is None:
            continue
        for teacher in sorted(_teachers(st)):
            root = _root(teacher, parent_of)
            theirs_dir = _directory(ctx, root) if root != student else None
            theirs = fingerprint(theirs_dir) if theirs_dir else None
            problems = _differences(ours, theirs) if theirs is not None else []
            if problems:
                keys = [k for k, t in st.teachers.items() if teacher in ([t.stage] if t.kind == "stage" else t.candidates)]
                span = ctx.span_of(("stages", i, "teachers", keys[0]), node.name.span)
                yield make("CAS326", f"teacher `{teacher}` and student `{st.name}` use different tokenizers",
                           span, label=f"tokenizer of `{shown(theirs_dir)}`", notes=tuple(problems) +
                           (f"the student's tokenizer is `{shown(mine)}`",),
                           help="distil from a checkpoint of the same model family (same tokenizer), e.g. one "
                           "trained from the same base model")
