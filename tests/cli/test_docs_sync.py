"""docs/diagnostics.md is generated from cascadec/codes.py and must stay in sync with it."""

from __future__ import annotations

import re
from pathlib import Path

from cascadec.codes import CODES
from cascadec.codes_doc import codes_markdown
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
