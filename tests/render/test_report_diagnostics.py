"""Diagnostic renderers, on hand-built `Diagnostic` objects (no parser needed)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from cascadec.diagnostics import Diagnostic, Label, Span
from cascadec.report_diagnostics import (
    RENDERERS,
    diagnostic_url,
    render_concise,
    render_full,
    render_github,
    render_json,
    render_sarif,
    summary_line,
)

if TYPE_CHECKING:
    from rich.text import Text

P = "specs/x.cascade"
SOURCE = (
    'cascade "x" {\n'
    "  stage sft = sft(base) { lr = 1e-5 }\n"
    "\tstage rl = grpo(trian) on math\n"
    '  domain 数学 { train = jsonl("a") }\n'
    "  stage d = distill(rl) {\n"
    "    teachers { }\n"
    "  }\n"
    "}\n"
)
SOURCES = {P: SOURCE}

UNKNOWN = Diagnostic(
    "CAS301",
    "unknown-stage",
    "error",
    "unknown stage `trian`",
    (
        Label(Span(P, 3, 18, 3, 23), "not defined in this cascade"),
        Label(Span(P, 2, 9, 2, 12), "similar name defined here", primary=False),
    ),
    help="did you mean `sft`?",
)
WIDE = Diagnostic(
    "CAS310", "bad-domain", "warning", "domain `数学` has no reward", (Label(Span(P, 4, 10, 4, 12), "declared here"),)
)
MULTILINE = Diagnostic(
    "CAS320",
    "empty-teachers",
    "error",
    "stage `d` has no teachers",
    (Label(Span(P, 5, 25, 7, 4)),),
    notes=("a distill stage needs at least one teacher",),
)
EOF_DIAG = Diagnostic(
    "CAS105", "unexpected-eof", "error", "unexpected end of file", (Label(Span(P, 9, 1, 9, 1), "expected `}`"),)
)
CROSS_FILE = Diagnostic(
    "CAS330",
    "import-cycle",
    "error",
    "import cycle",
    (
        Label(Span("specs/a.cascade", 1, 1, 1, 10), "imports `b`"),
        Label(Span("specs/b.cascade", 1, 1, 1, 10), "imports `a`", primary=False),
    ),
)
NO_SPAN = Diagnostic("CAS200", "no-span", "error", "the spec is empty", help="add a `cascade` block")
ALL = [UNKNOWN, WIDE, MULTILINE, EOF_DIAG, CROSS_FILE]


def test_full_snapshot() -> None:
    expected = """\
error[CAS330]: import cycle
 --> specs/a.cascade:1:1 (imports `b`)
 ::: specs/b.cascade:1:1 (imports `a`)

error[CAS301]: unknown stage `trian`
 --> specs/x.cascade:3:18
  |
2 |   stage sft = sft(base) { lr = 1e-5 }
  |         --- similar name defined here
3 |     stage rl = grpo(trian) on math
  |                     ^^^^^ not defined in this cascade
  |
  = help: did you mean `sft`?

warning[CAS310]: domain `数学` has no reward
 --> specs/x.cascade:4:10
  |
4 |   domain 数学 { train = jsonl("a") }
  |          ^^^^ declared here

error[CAS320]: stage `d` has no teachers
 --> specs/x.cascade:5:25
  |
5 |   stage d = distill(rl) {
  |                         ^
  |
  = note: a distill stage needs at least one teacher

error[CAS105]: unexpected end of file
 --> specs/x.cascade:9:1
  |
9 |
  | ^ expected `}`

found 4 errors and 1 warning
"""
    assert render_full(list(reversed(ALL)), SOURCES) == expected


def test_full_caret_sits_under_the_span_after_a_tab() -> None:
    lines = render_full([UNKNOWN], SOURCES).splitlines()
    source_row = next(i for i, line in enumerate(lines) if line.startswith("3 |"))
    caret_row = lines[source_row + 1]
    start = caret_row.index("^")
    assert lines[source_row][start : start + 5] == "trian"
    assert caret_row.count("^") == 5


def test_full_gutter_widens_for_two_digit_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(1, 13)) + "\n"
    diag = Diagnostic(
        "CAS301",
        "unknown-stage",
        "error",
        "m",
        (Label(Span(P, 12, 1, 12, 5), "here"), Label(Span(P, 3, 1, 3, 5), "there", primary=False)),
    )
    out = render_full([diag], {P: text})
    assert " --> specs/x.cascade:12:1" in out
    assert "12 | line 12\n   | ^^^^ here" in out
    assert " 3 | line 3\n   | ---- there" in out
    assert "...\n12 |" in out


def test_full_without_span_or_source() -> None:
    out = render_full([NO_SPAN], {})
    assert out == "error[CAS200]: the spec is empty\n  = help: add a `cascade` block\n\nfound 1 error\n"


def test_full_has_no_colour_codes_and_is_order_independent() -> None:
    a = render_full(ALL, SOURCES)
    b = render_full(list(reversed(ALL)), SOURCES)
    assert a == b
    assert "\x1b" not in a


def test_empty_input_renders_nothing() -> None:
    for name, renderer in RENDERERS.items():
        out = renderer([], {})
        if name in ("json",):
            assert json.loads(out) == []
        elif name == "sarif":
            assert json.loads(out)["runs"][0]["results"] == []
        else:
            assert out == ""


@pytest.mark.parametrize(
    ("errors", "warnings", "expected"),
    [(0, 0, ""), (1, 0, "found 1 error"), (0, 2, "found 2 warnings"), (3, 1, "found 3 errors and 1 warning")],
)
def test_summary_line(errors: int, warnings: int, expected: str) -> None:
    diags = [UNKNOWN] * errors + [WIDE] * warnings
    assert summary_line(diags) == expected


def test_concise() -> None:
    assert render_concise([WIDE, UNKNOWN, NO_SPAN]) == (
        "error[CAS200] the spec is empty\n"
        "specs/x.cascade:3:18: error[CAS301] unknown stage `trian`\n"
        "specs/x.cascade:4:10: warning[CAS310] domain `数学` has no reward\n"
        "found 2 errors and 1 warning\n"
    )


def test_json_keys_and_values() -> None:
    items = json.loads(render_json([WIDE, UNKNOWN]))
    assert [i["code"] for i in items] == ["CAS301", "CAS310"]
    first = items[0]
    assert first == {
        "code": "CAS301",
        "name": "unknown-stage",
        "message": "unknown stage `trian`",
        "severity": "error",
        "filename": P,
        "location": {"row": 3, "column": 18},
        "end_location": {"row": 3, "column": 23},
        "help": "did you mean `sft`?",
        "notes": [],
        "labels": [
            {
                "filename": P,
                "location": {"row": 3, "column": 18},
                "end_location": {"row": 3, "column": 23},
                "text": "not defined in this cascade",
                "primary": True,
            },
            {
                "filename": P,
                "location": {"row": 2, "column": 9},
                "end_location": {"row": 2, "column": 12},
                "text": "similar name defined here",
                "primary": False,
            },
        ],
        "url": "docs/diagnostics.md#cas301",
    }


def test_json_without_span() -> None:
    (item,) = json.loads(render_json([NO_SPAN]))
    assert item["filename"] is None and item["location"] is None and item["end_location"] is None


def test_github_escapes_properties_and_data() -> None:
    diag = Diagnostic(
        "CAS301",
        "unknown-stage",
        "error",
        "100% wrong, really: yes",
        (Label(Span("dir,1/a:b.cascade", 2, 3, 2, 7)),),
        help="line one\nline two",
    )
    out = render_github([diag, WIDE])
    lines = out.splitlines()
    assert out.endswith("\n") and len(lines) == 2
    assert lines[0] == (
        "::error title=cascadec (CAS301),file=dir%2C1/a%3Ab.cascade,line=2,col=3,endLine=2,endColumn=7"
        "::dir,1/a:b.cascade:2:3: CAS301 100%25 wrong, really: yes%0Ahelp: line one%0Aline two"
    )
    assert lines[1].startswith("::warning title=cascadec (CAS310),file=specs/x.cascade,line=4,col=10,")


def test_sarif_structure() -> None:
    log = json.loads(render_sarif([WIDE, UNKNOWN, NO_SPAN]))
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["CAS200", "CAS301", "CAS310"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["CAS200", "CAS301", "CAS310"]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    assert "locations" not in results[0]
    unknown = results[1]
    assert unknown["level"] == "error"
    region = unknown["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 3, "startColumn": 18, "endLine": 3, "endColumn": 23}
    assert unknown["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == P
    (related,) = unknown["relatedLocations"]
    assert related["message"]["text"] == "similar name defined here"
    assert related["physicalLocation"]["region"]["startLine"] == 2
    assert unknown["message"]["text"] == "unknown stage `trian`\nhelp: did you mean `sft`?"
    assert results[2]["level"] == "warning"


def test_diagnostic_url_anchor() -> None:
    assert diagnostic_url("CAS301") == "docs/diagnostics.md#cas301"


def test_full_counts_lines_like_the_parser_does() -> None:
    """Only "\\n" ends a line (as in Lark); form feeds, U+2028 and CRLF endings do not shift the snippet."""
    source = "a = 1\x0c b = 2\r\nc\u2028 = 3\r\nstage x\n"
    diag = Diagnostic("CAS300", "unknown-name", "error", "m", (Label(Span(P, 3, 7, 3, 8), "here"),))
    out = render_full([diag], {P: source})
    assert "3 | stage x\n  |       ^ here\n" in out
    assert "\r" not in out


def _styles_of(text: Text, needle: str) -> set[str]:
    start = text.plain.index(needle)
    return {str(s.style) for s in text.spans if s.start <= start < s.end}


def test_highlight_full_colours_structure_not_source() -> None:
    from cascadec.report_diagnostics import highlight_full

    plain = render_full([UNKNOWN, WIDE], SOURCES)
    text = highlight_full(plain)
    assert text.plain == plain
    assert _styles_of(text, "error[CAS301]") == {"bold red"}
    assert _styles_of(text, "warning[CAS310]") == {"bold yellow"}
    assert _styles_of(text, "^^^^^ not defined") == {"bold red"}
    assert _styles_of(text, "--- similar name") == {"bold blue"}
    assert _styles_of(text, "= help:") == {"bold green"}
    assert _styles_of(text, "stage sft = sft(base)") == set()  # the user's source keeps its own colours
    concise = highlight_full(render_concise([UNKNOWN]))
    assert _styles_of(concise, "error[CAS301]") == {"bold red"}


def _caret_under(source_line: str, at: str, message: str = "m") -> tuple[str, str]:
    """The excerpt row and the caret row of a diagnostic spanning the text ``at`` of ``source_line``."""
    begin = source_line.index(at)
    span = Span(P, 1, begin + 1, 1, begin + 1 + len(at), begin, begin + len(at))
    lines = render_full([Diagnostic("CAS301", "unknown-key", "error", message, (Label(span, "here"),))],
                        {P: source_line + "\n"}).splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("1 |"))
    return lines[row].removeprefix("1 | "), lines[row + 1].removeprefix("  | ")


@pytest.mark.parametrize("before", ['"你好世界" ', '"e\u0301e\u0301"\t', '"你\u0301"\t', '"😀😀" ', "\u3000"])
def test_full_carets_sit_under_the_span_after_wide_combining_and_tab_characters(before: str) -> None:
    shown, carets = _caret_under(f"  note = {before}zzz = 3", "zzz")
    # East Asian wide characters take 2 columns, combining marks none, a tab runs to the next multiple of 4
    cells = [0]
    for ch in shown:
        cells.append(cells[-1] + (2 if ch in "你好世界😀\u3000" else 0 if ch == "\u0301" else 1))
    start = carets.index("^")
    assert carets.count("^") == 3 and shown[cells.index(start):cells.index(start) + 3] == "zzz"


def test_a_wide_character_under_the_span_gets_two_carets_and_the_column_counts_characters() -> None:
    shown, carets = _caret_under("  base ＝ model(x)", "＝")
    assert carets == "       ^^ here"
    assert "x.cascade:1:8" in render_concise([Diagnostic(
        "CAS101", "c", "error", "m", (Label(Span(P, 1, 8, 1, 9, 7, 8)),))])


@pytest.mark.parametrize("invisible", ["\u202e", "\u2066", "\u200b", "\ufeff", "\u2028", "\x85"])
def test_bidi_and_invisible_characters_are_never_echoed_raw(invisible: str) -> None:
    line = f'  x = 1 # "{invisible}" {invisible}y = 2'
    code = f"<U+{ord(invisible):04X}>"
    shown, carets = _caret_under(line, "y", f"`{invisible}y` is odd")
    assert invisible not in shown and shown.count(code) == 2
    assert carets.index("^") == shown.index("y = 2")
    diag = Diagnostic("CAS301", "n", "error", f"`{invisible}y`", (Label(Span(P, 1, 1, 1, 2, 0, 1), invisible),),
                      notes=(invisible,), help=invisible)
    for render in (render_full, render_concise, render_github):
        text = render([diag], {P: line + "\n"})
        assert invisible not in text and code in text, render.__name__
