"""docs/diagnostics.md is generated from cascadec/codes.py, and docs/language.md's lists of stage kinds, their
defaults and the codes from the code (`cascadec.language_doc`); both must stay in sync with it."""

from __future__ import annotations

import re
from pathlib import Path

from cascadec.codes import CODES
from cascadec.codes_doc import codes_markdown
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.language_doc import regenerate
from cascadec.report_diagnostics import diagnostic_url

DOC = Path(__file__).parents[2] / "docs" / "diagnostics.md"


def test_diagnostics_doc_matches_the_code_table(update_goldens: bool) -> None:
    expected = codes_markdown(CODES.values())
    if update_goldens:
        DOC.write_text(expected, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/diagnostics.md is stale; regenerate it with "
        "`python -m pytest tests/cli/test_docs_sync.py --update-goldens`"
    )


def test_every_code_has_exactly_one_anchor_and_its_url_resolves() -> None:
    text = DOC.read_text(encoding="utf-8")
    anchors = re.findall(r'<a id="([^"]+)"></a>', text)
    assert sorted(anchors) == sorted(code.lower() for code in CODES)
    for code in CODES:
        path, anchor = diagnostic_url(code).split("#")
        assert path == "docs/diagnostics.md" and anchors.count(anchor) == 1
        assert f"## {code} `{CODES[code].name}`" in text


LANGUAGE = DOC.parent / "language.md"
ROOT = DOC.parents[1]


def test_the_generated_parts_of_the_language_reference_match_the_code(update_goldens: bool) -> None:
    text = LANGUAGE.read_text(encoding="utf-8")
    expected = regenerate(text)
    if update_goldens:
        LANGUAGE.write_text(expected, encoding="utf-8")
    assert text == expected, ("docs/language.md lists kinds, defaults or codes that the code does not; regenerate "
                              "with `python -m pytest tests/cli/test_docs_sync.py --update-goldens`")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def test_the_language_reference_lists_every_stage_kind_with_its_defaults() -> None:
    stages = _section(LANGUAGE.read_text(encoding="utf-8"), "### Stages")
    for name, kind in STAGE_KINDS.items():
        assert f"| `{name}` | {kind.doc} |" in stages, name
        assert f"| `{kind.params.batch_key}` |" in stages, name


def test_every_code_the_compiler_or_runtime_raises_is_listed_with_the_checks() -> None:
    raised = {code for folder in ("cascadec", "runtime") for path in (ROOT / folder).rglob("*.py")
              if path.name != "codes.py" for code in re.findall(r'"(CAS\d{3})"', path.read_text(encoding="utf-8"))}
    assert raised and raised <= set(CODES), sorted(raised - set(CODES))
    checks = _section(LANGUAGE.read_text(encoding="utf-8"), "## What the compiler checks")
    assert not [c for c in raised if f"[{c}](diagnostics.md#{c.lower()})" not in checks]
