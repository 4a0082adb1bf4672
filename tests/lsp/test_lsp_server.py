"""`cascadec lsp` driven by a real LSP client over stdio (pytest-lsp starts the server as a subprocess).

Diagnostics must be the compiler's own (same codes and spans as `cascadec lint`); completion, hover,
go-to-definition and formatting are checked on the papers' spec and small edits of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the language server needs pygls (pip install 'cascadec[lsp]')")
pytest_lsp = pytest.importorskip("pytest_lsp", reason="pytest-lsp is not installed (pip install -e '.[dev]')")
from lsprotocol import types as t  # noqa: E402

from cascadec.compiler import compile_source  # noqa: E402
from cascadec.fmt import format_source  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
C2 = ROOT / "specs" / "nemotron-cascade-2.cascade"
IMPORTS = ROOT / "tests" / "golden" / "valid" / "imports.cascade"


@pytest_lsp.fixture(config=pytest_lsp.ClientServerConfig(server_command=[sys.executable, "-m", "cascadec.cli", "lsp"]))
async def client(lsp_client: pytest_lsp.LanguageClient):
    await lsp_client.initialize_session(t.InitializeParams(capabilities=t.ClientCapabilities(), root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


async def _open(client, path: Path, text: str | None = None) -> str:
    uri = path.as_uri()
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        t.TextDocumentItem(uri=uri, language_id="cascade", version=1, text=text or path.read_text())))
    await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri


def _at(text: str, needle: str, shift: int = 0) -> t.Position:
    offset = text.index(needle) + shift
    return t.Position(text.count("\n", 0, offset), offset - text.rfind("\n", 0, offset) - 1)


@pytest.mark.asyncio
async def test_diagnostics_on_open_and_change_are_the_compilers(client) -> None:
    text = C2.read_text()
    uri = await _open(client, C2)
    # the paper's data is not shipped: its missing folder is one warning (CAS320), there before and after
    assert [d.code for d in client.diagnostics[uri]] == [d.code for d in compile_source(text, str(C2)).diagnostics] \
        == ["CAS320"]
    bad = text.replace("steps = 25", "stepz = 25", 1)
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        t.VersionedTextDocumentIdentifier(uri=uri, version=2), [t.TextDocumentContentChangeWholeDocument(bad)]))
    await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    [found] = [d for d in client.diagnostics[uri] if d.code != "CAS320"]
    [expected] = [d for d in compile_source(bad, str(C2)).diagnostics if d.code != "CAS320"]
    assert (found.code, found.source, found.severity) == (expected.code, "cascadec", t.DiagnosticSeverity.Error)
    span = expected.span
    assert found.range == t.Range(t.Position(span.line - 1, span.column - 1),
                                  t.Position(span.end_line - 1, span.end_column - 1))
    assert found.message == f"{expected.message}\nhelp: {expected.help}"
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        t.VersionedTextDocumentIdentifier(uri=uri, version=3), [t.TextDocumentContentChangeWholeDocument(text)]))
    await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert [d.code for d in client.diagnostics[uri]] == ["CAS320"]


@pytest.mark.asyncio
async def test_syntax_error_and_error_in_an_imported_file(client, tmp_path: Path) -> None:
    (tmp_path / "lib.cascade").write_text('domain d {\n  train = gym("basic_arithmetic", size = 8)\n'
                                          '  reward = gym()\n  overlong = sometimes\n}\n')
    main = tmp_path / "main.cascade"
    text = ('import "lib.cascade"\ncascade "c" {\n  base = model(packaged("smollm2-135m-instruct"))\n'
            '  stage s = sft(base) { steps = 1  lr = 1e-5 }\n}\n')
    uri = await _open(client, main, text)
    [found] = client.diagnostics[uri]
    assert found.code == "CAS200" and found.range.start.line == 0  # shown on the import line
    assert found.message.startswith("lib.cascade:4:14: ")
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        t.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [t.TextDocumentContentChangeWholeDocument(text.replace("steps = 1", "steps = = 1"))]))
    await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    [found] = client.diagnostics[uri]
    [expected] = compile_source(text.replace("steps = 1", "steps = = 1"), str(main)).diagnostics
    assert found.code == expected.code == "CAS100" and found.range.start == t.Position(3, 32)


async def _labels(client, uri: str, pos: t.Position) -> list[str]:
    result = await client.text_document_completion_async(t.CompletionParams(t.TextDocumentIdentifier(uri), pos))
    return [item.label for item in result.items]


@pytest.mark.asyncio
async def test_completion_by_context(client, tmp_path: Path) -> None:
    spec = tmp_path / "c.cascade"
    text = ('cascade "c" {\n  tracking = [tensorboard, ]\n  domain math {\n    train = gym("gsm_symbolic", size = 8)\n'
            '    reward = \n    eval gsm = gym("gsm_symbolic", size = 8) { metric = pass@1 }\n  }\n'
            '  stage sft = sft(base) on [math] { steps = 1  lr = 1e-5 }\n'
            '  stage rl = grpo(sft) on [ma] {  }\n'
            '  stage kd = distill(rl) { teachers { math = s } until math.gsm >= 0.5 }\n}\n')
    uri = await _open(client, spec, text)
    in_grpo = await _labels(client, uri, _at(text, "{  }", 2))
    assert {"kl", "rollouts_per_prompt", "top_p", "steps", "resources", "until"} <= set(in_grpo)
    assert "batch_size" not in in_grpo and "jsd_beta" not in in_grpo
    assert set(await _labels(client, uri, _at(text, "grpo(sft)", 5))) == {"base", "sft", "rl", "kd"}
    assert await _labels(client, uri, _at(text, "[ma]", 3)) == ["math"]
    assert "math_verify" in await _labels(client, uri, _at(text, "reward = ", 9))
    assert await _labels(client, uri, _at(text, "tensorboard, ]", 13)) == ["tensorboard", "wandb", "mlflow", "trackio"]
    assert {"sft", "rl", "best"} <= set(await _labels(client, uri, _at(text, "math = s", 8)))
    assert set(await _labels(client, uri, _at(text, "teachers { ", 11))) == {"math", "default"}
    assert "math.gsm" in await _labels(client, uri, _at(text, "until math", 6))
    assert {"metric", "max_tokens"} <= set(await _labels(client, uri, _at(text, "{ metric", 2)))
    assert {"train", "system", "decontaminate"} <= set(await _labels(client, uri, _at(text, "    eval gsm", 0)))
    assert {"base", "seed", "tracking", "stage", "domain"} <= set(await _labels(client, uri, _at(text, "  tracking", 0)))


@pytest.mark.asyncio
async def test_hover_definition_and_formatting(client) -> None:
    text = C2.read_text()
    uri = await _open(client, C2)

    async def hover(pos: t.Position) -> str | None:
        result = await client.text_document_hover_async(t.HoverParams(t.TextDocumentIdentifier(uri), pos))
        return result.contents.value if result else None

    assert "`top_p` (float, default 1.0)" in await hover(_at(text, "top_p", 1))
    assert (await hover(_at(text, "math_verify(", 2))).startswith("reward `math_verify(")
    assert (await hover(_at(text, "grpo(sft)", 6))).startswith("stage `sft`")
    found = await client.text_document_definition_async(t.DefinitionParams(t.TextDocumentIdentifier(uri),
                                                                            _at(text, "grpo(sft)", 6)))
    assert found.uri == uri and found.range.start == _at(text, "stage sft ", 6)
    imports_text = IMPORTS.read_text()
    imp = await _open(client, IMPORTS)
    found = await client.text_document_definition_async(t.DefinitionParams(
        t.TextDocumentIdentifier(imp), _at(imports_text, "on arith", 4)))
    assert found.uri == (IMPORTS.parent / "_lib" / "common.cascade").as_uri()  # declared in the imported file
    messy = text.replace("stage sft ", "stage    sft ", 1)
    assert messy != text
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        t.VersionedTextDocumentIdentifier(uri=uri, version=2), [t.TextDocumentContentChangeWholeDocument(messy)]))
    await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    [edit] = await client.text_document_formatting_async(t.DocumentFormattingParams(
        t.TextDocumentIdentifier(uri), t.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edit.new_text == format_source(messy, str(C2))[0] == text


def test_columns_count_characters_on_the_command_line_and_utf16_units_in_the_editor() -> None:
    from cascadec.lsp import features
    from cascadec.report_diagnostics import render_concise

    text = 'cascade "x" {\n  stage s = sft(base) { note = "😀你" zzz = 3 }\n}\n'
    [cli, *_] = [d for d in compile_source(text, "w.cascade").diagnostics if "zzz" in d.message]
    [editor] = [d for d in features.diagnostics(text, "w.cascade") if "zzz" in d.message]
    line = text.split("\n")[1]
    assert cli.span.column == line.index("zzz") + 1 and f"w.cascade:2:{cli.span.column}:" in render_concise([cli])
    assert editor.range.start == t.Position(1, line.index("zzz") + 1)  # 😀 is two UTF-16 units
    assert features.offset_of(text, editor.range.start) == cli.span.start
