"""The TextMate grammar (`editors/vscode/syntaxes/cascade.tmLanguage.json`) and the VS Code extension folder.

The grammar is run by textmate-grammar-python (a port of vscode-textmate on the Oniguruma regex engine) on
every shipped spec: no character may fall to the `invalid.illegal` catch-all, every block, parenthesis and
bracket that opens must close in order (brackets are single-token scopes: textmate-grammar-python 0.6 mis-nests
adjacent `end` matches of begin/end regions, so the nesting is checked here instead).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cascadec.contract.kinds import REWARD_KINDS, STAGE_KINDS

textmate = pytest.importorskip("textmate_grammar.parsers.base",
                               reason="textmate-grammar-python is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((VSCODE / "syntaxes" / "cascade.tmLanguage.json").read_text())
SHIPPED = sorted([*ROOT.glob("specs/**/*.cascade"), *ROOT.glob("examples/**/*.cascade"),
                  *ROOT.glob("tests/golden/valid/**/*.cascade")])


def _tokens(text: str) -> list[tuple[tuple[int, int], str, list[str]]]:
    return textmate.LanguageParser(GRAMMAR).parse_string(text).flatten()


def _unmatched(tokens: list) -> str | None:
    """The first bracket that does not close in order, or None."""
    open_regions: list[tuple[str, tuple[int, int]]] = []
    for pos, tok, scopes in tokens:
        m = re.fullmatch(r"punctuation\.section\.(\w+)\.(begin|end)\.cascade", scopes[-1])
        for _ in tok if m else ():  # the tokeniser merges neighbours of one scope: `))` is one token
            if m.group(2) == "begin":
                open_regions.append((m.group(1), pos))
            elif not open_regions or open_regions.pop()[0] != m.group(1):
                return f"unmatched {m.group(1)} end at {pos}"
    return f"{open_regions[-1][0]} at {open_regions[-1][1]} never closed" if open_regions else None


def test_there_are_specs_to_tokenise() -> None:
    assert len(SHIPPED) >= 5 and any(p.name == "nemotron-cascade-2.cascade" for p in SHIPPED)


@pytest.mark.parametrize("spec", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_spec_tokenises_without_unmatched_scopes(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    tokens = _tokens(text)
    illegal = [(pos, tok) for pos, tok, scopes in tokens if any(s.startswith("invalid.") for s in scopes)]
    assert illegal == []
    assert "".join(tok for _, tok, _ in tokens).replace("\n", "") == text.replace("\n", "")
    assert _unmatched(tokens) is None


def test_scopes_of_the_language_parts() -> None:
    text = ('# note\ncascade "c" {\n  domain math { reward = math_verify()  eval gsm = gym("g") { metric = avg@4 } }\n'
            '  stage rl = grpo(sft) on math { dynamic_filter = on  lr = 2e-6 warmup 3 from 1e-7  max_response = 49k }\n}\n')
    scopes = {tok.strip(): s[-1] for _, tok, s in _tokens(text)}
    assert scopes["# note"] == "comment.line.number-sign.cascade"
    assert scopes['"c"'] == "string.quoted.double.cascade"
    assert scopes["math_verify"] == "support.function.reward.cascade"
    assert scopes["grpo"] == "support.type.stage-kind.cascade"
    assert scopes["rl"] == "entity.name.function.stage.cascade"
    assert scopes["gsm"] == "entity.name.tag.eval.cascade"
    assert scopes["avg@4"] == "constant.other.metric.cascade"
    assert scopes["49k"] == "constant.numeric.cascade"
    assert scopes["dynamic_filter"] == "variable.other.property.cascade"
    assert scopes["on"] == "constant.language.cascade"  # the value `on`; the `on` after a stage header is a keyword
    assert scopes["warmup"] == "keyword.other.warmup.cascade"


def test_a_stray_brace_an_unclosed_call_and_an_unterminated_string_are_found() -> None:
    assert _unmatched(_tokens('cascade "c" { }\n}\n')) == "unmatched block end at (1, 0)"
    assert _unmatched(_tokens('cascade "c" { base = model(m }\n')) == "unmatched block end at (0, 29)"
    assert _unmatched(_tokens('cascade "c" { base = model(m)\n')) == "block at (0, 12) never closed"
    scopes = [s[-1] for _, _, s in _tokens('x = "open\n')]
    assert "invalid.illegal.unterminated-string.cascade" in scopes


def test_grammar_knows_every_stage_and_reward_kind() -> None:
    calls = {p["name"]: p["match"] for p in GRAMMAR["repository"]["kind-call"]["patterns"]}
    assert calls["support.type.stage-kind.cascade"] == "\\b(?:" + "|".join(STAGE_KINDS) + ")(?=\\s*\\()"
    assert calls["support.function.reward.cascade"] == "\\b(?:" + "|".join(REWARD_KINDS) + ")(?=\\s*\\()"


def test_extension_folder_is_complete() -> None:
    pkg = json.loads((VSCODE / "package.json").read_text())
    [language] = pkg["contributes"]["languages"]
    [grammar] = pkg["contributes"]["grammars"]
    assert language["id"] == grammar["language"] == "cascade" and language["extensions"] == [".cascade"]
    assert grammar["scopeName"] == GRAMMAR["scopeName"]
    assert (VSCODE / grammar["path"]).resolve() == (VSCODE / "syntaxes" / "cascade.tmLanguage.json").resolve()
    assert json.loads((VSCODE / language["configuration"]).read_text())["comments"]["lineComment"] == "#"
    assert pkg["contributes"]["configuration"]["properties"]["cascade.server.command"]["default"] == ["cascadec", "lsp"]
    assert "vscode-languageclient" in pkg["dependencies"] and (VSCODE / pkg["main"]).is_file()
    node = shutil.which("node")
    if node:
        subprocess.run([node, "--check", str(VSCODE / pkg["main"])], check=True)
