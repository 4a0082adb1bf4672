"""The parts of docs/language.md that are lists of what the code defines: the stage kinds (`cascadec.contract.kinds`),
the defaults of their parameters (`cascadec.contract.params`) and the diagnostic codes (`cascadec.codes`).

Each part sits between ``<!-- BEGIN generated: NAME -->`` and ``<!-- END generated: NAME -->``;
`tests/cli/test_docs_sync.py` keeps them equal to the code (``--update-goldens`` rewrites them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from cascadec.codes import CODES
from cascadec.contract.kinds import STAGE_KINDS

_HOW = ("<!-- Generated from the code; regenerate with "
        "`python -m pytest tests/cli/test_docs_sync.py --update-goldens`. -->")
_GROUPS = {"0": "files", "1": "syntax", "2": "values and types", "3": "names and structure", "4": "semantics",
           "5": "reward contracts (`lint --check-rewards`)", "9": "internal errors"}


def stage_kinds() -> str:
    """A table of the stage kinds: name, what it trains, the key that sets its rows per step, teachers."""
    rows = ["| kind | what it does | rows per step | `teachers { }` |", "|---|---|---|---|"]
    for kind in STAGE_KINDS.values():
        rows.append(f"| `{kind.name}` | {kind.doc} | `{kind.params.batch_key}` | "
                    f"{'required' if kind.teachers else 'no'} |")
    return "\n".join(rows)


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "required"
    return _shown(field.default)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, tuple):
        return "`(" + ", ".join(_shown(v).strip("`") for v in value) + ")`"
    return f"`{format(value, 'g').replace('e-0', 'e-')}`" if isinstance(value, float) else f"`{value}`"


def _key_default(params: type[BaseModel], target: tuple[str, ...]) -> str | None:
    """The default of the parameter at ``target`` (a path below ``params``), or None when it is not one."""
    if target[0] != "params" or len(target) < 2:
        return None
    model: type[BaseModel] = params
    for name in target[1:-1]:
        annotation = model.model_fields[name].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return _default(model, target[-1]) if target[-1] in model.model_fields else None


def stage_defaults() -> str:
    """A table of every stage key that sets a parameter: its default in each kind (blank: not a key there)."""
    kinds = list(STAGE_KINDS.values())
    keys = sorted({key for kind in kinds for key, spec in kind.all_keys().items()
                   if _key_default(kind.params, spec.target) is not None})
    rows = ["| key | " + " | ".join(f"`{k.name}`" for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for key in keys:
        cells = []
        for kind in kinds:
            spec = kind.all_keys().get(key)
            cells.append(_key_default(kind.params, spec.target) or "" if spec is not None else "")
        rows.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def codes_index() -> str:
    """Every diagnostic code by group, with its name, linked to its section of docs/diagnostics.md."""
    lines = []
    for digit, group in _GROUPS.items():
        codes = [c for c in sorted(CODES) if c[3] == digit]
        links = ", ".join(f"[{c}](diagnostics.md#{c.lower()}) `{CODES[c].name}`" for c in codes)
        lines.append(f"- {group}: {links}")
    return "\n".join(lines)


PARTS: dict[str, Callable[[], str]] = {"stage-kinds": stage_kinds, "stage-defaults": stage_defaults,
                                       "codes": codes_index}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- BEGIN generated: {name} -->\n)(.*?)(<!-- END generated: {name} -->)", re.S)


def regenerate(text: str) -> str:
    """``text`` (docs/language.md) with every generated part written anew; a part without its markers is an
    error (ValueError), not silently left out."""
    for name, make in PARTS.items():
        pattern = _block(name)
        if pattern.search(text) is None:
            raise ValueError(f"docs/language.md has no `<!-- BEGIN generated: {name} -->` block")
        text = pattern.sub(lambda m, body=make(): f"{m.group(1)}{_HOW}\n\n{body}\n\n{m.group(3)}", text)
    return text
