"""Regenerate `cascadec/gym_registry.json`: every reasoning-gym generator name and its config keys.

The compiler checks `gym("NAME", key = value)` against this file (CAS318, CAS319) instead of importing
reasoning-gym, which takes about a second to import. The file maps each name registered in
`reasoning_gym.factory.DATASETS` to the sorted field names of its config dataclass (the keywords that
`reasoning_gym.create_dataset(NAME, **kwargs)` passes to ``config_cls(**kwargs)``), and records the
reasoning-gym version it was read from.

Usage (from the repository root, with cascadec installed as the README says):

    python scripts/gen_gym_registry.py           # rewrite the file from the installed reasoning-gym
    python scripts/gen_gym_registry.py --check   # exit 1 if the file disagrees with the installed one

`tests/compiler/test_gym_check.py` runs the same comparison, so an upgrade of reasoning-gym that adds,
removes or renames a generator or a config field fails the tests until the file is regenerated.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import sys
from pathlib import Path

from cascadec.contract.fsutil import atomic_write_text

REGISTRY = Path(__file__).resolve().parents[1] / "cascadec" / "gym_registry.json"


def read_installed() -> tuple[str, dict[str, list[str]]]:
    """The installed reasoning-gym's version and its generators: ``{NAME: sorted config field names}``.

    Only fields with ``init=True`` are listed: the others cannot be passed to the config's constructor.
    Raises ImportError when reasoning-gym is not installed.
    """
    from reasoning_gym.factory import DATASETS

    generators = {
        name: sorted(f.name for f in dataclasses.fields(config_cls) if f.init)
        for name, (_dataset_cls, config_cls) in DATASETS.items()
    }
    return importlib.metadata.version("reasoning-gym"), generators


def render(version: str, generators: dict[str, list[str]]) -> str:
    """The file text: sorted keys, one generator per line (so that a reasoning-gym upgrade diffs readably)."""
    lines = [f"    {json.dumps(name)}: {json.dumps(generators[name])}" for name in sorted(generators)]
    return "\n".join([
        "{",
        '  "generated_by": "scripts/gen_gym_registry.py",',
        '  "generators": {',
        ",\n".join(lines),
        "  },",
        f'  "reasoning_gym": {json.dumps(version)}',
        "}",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text = render(*read_installed())
    current = REGISTRY.read_text(encoding="utf-8") if REGISTRY.exists() else ""
    if args.check:
        if current != text:
            print(f"{REGISTRY} is stale; run `python scripts/gen_gym_registry.py`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        atomic_write_text(REGISTRY, text)
    print(f"{REGISTRY}: {len(json.loads(text)['generators'])} generators")
    return 0


if __name__ == "__main__":
    sys.exit(main())
