"""The real public configs written as cascades (examples/real/) and the veRL-format example: each lints with
no diagnostic, compiles, and its header's exact / approximate / impossible counts add up to its total and to
the settings it lists under each heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import invoke

ROOT = Path(__file__).parents[2]
REAL = sorted((ROOT / "examples" / "real").glob("*.cascade"))
EXAMPLES = [*REAL, ROOT / "examples" / "verl-gsm8k" / "verl-gsm8k.cascade"]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.name)
def test_example_lints_clean_and_compiles(spec: Path, tmp_path: Path) -> None:
    rel = str(spec.relative_to(ROOT))
    lint = invoke(["lint", rel])
    assert (lint.exit_code, lint.stdout) == (0, "all checks passed (1 file)\n"), lint.stdout + lint.stderr
    built = invoke(["compile", rel, "-o", str(tmp_path)])
    assert built.exit_code == 0, built.stderr
    assert (Path(built.stdout.strip()) / "plan.json").is_file()


def _header(spec: Path) -> str:
    return spec.read_text().split("\ncascade \"", 1)[0]


@pytest.mark.parametrize("spec", REAL, ids=lambda p: p.name)
def test_header_counts_add_up(spec: Path) -> None:
    header = _header(spec)
    total = int(re.search(r"(\d+) settings", header).group(1))
    counts = re.search(r"(\d+) exact, (\d+) approximate, (\d+) impossible", header)
    assert counts, "the header states `N exact, N approximate, N impossible`"
    exact, approximate, impossible = map(int, counts.groups())
    assert exact + approximate + impossible == total
    for word, count in (("exact", exact), ("approximate", approximate), ("impossible", impossible)):
        assert re.search(rf"^# {word} \({count}\):", header, re.M), f"`# {word} ({count}):` lists them"
