"""docs/diagnostics.md, generated from the code table (`cascadec.codes`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DOCS_HEADER = """\
# Diagnostics

<!-- Generated from cascadec/codes.py; do not edit by hand. Regenerate with
     `python -m pytest tests/cli/test_docs_sync.py --update-goldens`. -->

Every problem the compiler reports has a stable code (`CAS` and three digits), a kebab-case name and
a severity. Codes are grouped by compiler phase: `CAS0xx` files, `CAS1xx` syntax, `CAS2xx` values
and types, `CAS3xx` names and structure, `CAS4xx` semantics of the cascade, `CAS5xx` reward
contracts (`lint --check-rewards`), `CAS999` internal errors. `cascadec explain CODE` prints the same text; the `url` of each JSON diagnostic points at
its section here.

`cascadec lint --format FORMAT` (and `compile --format`) prints diagnostics as:

| format | shape |
|---|---|
| `full` (default) | rustc-style: `error[CAS300]: message`, ` --> file:line:col`, the source line with `^^^` under the span, `= note:` / `= help:` lines, a summary |
| `concise` | one `file:line:col: error[CAS300] message` line per diagnostic, then the summary |
| `json` | a list of objects with `code`, `name`, `message`, `severity`, `filename`, `location` and `end_location` (`row`, `column`; 1-based, end exclusive), `help`, `notes`, `labels`, `url` |
| `github` | GitHub Actions annotations (`::error title=cascadec (CAS300),file=...,line=...::...`) |
| `sarif` | SARIF 2.1.0, one rule per code, secondary labels as `relatedLocations` |

Exit codes: `0` no errors (warnings allowed unless `--warnings-as-errors`), `1` errors found, `2` a
usage, file or internal error, `3` (`cascadec run` only) a stage failed after a successful compile.
"""


def codes_markdown(codes: Iterable[Any]) -> str:
    """The text of ``docs/diagnostics.md``: an index table, then one anchored section per code.

    ``codes`` are `cascadec.codes.Code` records (``code``, ``name``, ``severity``, ``summary``,
    ``explanation``); each section opens with ``<a id="casNNN"></a>`` so that `diagnostic_url`
    links stay stable when headings change.
    """
    ordered = sorted(codes, key=lambda c: c.code)
    out = [DOCS_HEADER, "| code | name | severity | summary |", "|---|---|---|---|"]
    out += [f"| [{c.code}](#{c.code.lower()}) | `{c.name}` | {c.severity} | {_md_cell(c.summary)} |" for c in ordered]
    for c in ordered:
        out += ["", f'<a id="{c.code.lower()}"></a>', "", f"## {c.code} `{c.name}`"]
        out += ["", f"**{c.severity}**: {c.summary}", "", c.explanation]
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")
