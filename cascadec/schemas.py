"""JSON schemas of the spec's typed input model and of `plan.json`, published in `docs/schema/` for other
tools. Regenerate with ``python -m cascadec.schemas docs/schema``; a test keeps the files equal to this
output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cascadec.contract.fsutil import atomic_write_text

BASE = "https://cascadec.invalid/schema/"  # an identifier, not a download location


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON schema (draft 2020-12, as pydantic writes it)."""
    from cascadec.model import json_schema
    from cascadec.contract.plan import PLAN_VERSION, Plan

    plan = Plan.model_json_schema()
    plan["description"] = (f"cascadec plan.json, version {PLAN_VERSION}: the checked, lowered cascade that the "
                           "runtime executes (stages in topological order, resolved inputs, content hashes).")
    spec = json_schema()
    spec["description"] = ("cascadec's typed input model of a .cascade spec after checking, before lowering "
                           "(the values a spec sets, with the ranges the compiler enforces).")
    out = {}
    for name, schema in (("plan.schema.json", plan), ("spec-input.schema.json", spec)):
        out[name] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": BASE + name, **schema}
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "docs/schema")
    for name, schema in schemas().items():
        atomic_write_text(target / name, render(schema))
        print(target / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
