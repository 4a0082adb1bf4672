"""`cascadec lsp`: a pygls language server on stdin/stdout.

Diagnostics are published on open, change and save, computed by the compiler itself (same codes, spans and
help lines as `cascadec lint`); completion, hover, go-to-definition and formatting come from
`cascadec.lsp.features`. Documents are synced in full: a `.cascade` file is small and the compiler runs on
the whole text anyway.
"""

from __future__ import annotations

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer

from cascadec import __version__
from cascadec.lsp import features

server = LanguageServer("cascadec", __version__, text_document_sync_kind=t.TextDocumentSyncKind.Full)


def _publish(ls: LanguageServer, uri: str) -> None:
    doc = ls.workspace.get_text_document(uri)
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
        uri=uri, diagnostics=features.diagnostics(doc.source, doc.path), version=doc.version))


@server.feature(t.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: LanguageServer, params: t.DidOpenTextDocumentParams) -> None:
    _publish(ls, params.text_document.uri)


@server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: LanguageServer, params: t.DidChangeTextDocumentParams) -> None:
    _publish(ls, params.text_document.uri)


@server.feature(t.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: LanguageServer, params: t.DidSaveTextDocumentParams) -> None:
    _publish(ls, params.text_document.uri)  # an imported file may have changed on disk


@server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: LanguageServer, params: t.DidCloseTextDocumentParams) -> None:
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=["=", "(", "[", ".", " "]))
def completion(ls: LanguageServer, params: t.CompletionParams) -> t.CompletionList:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    items = features.completion(doc.source, features.offset_of(doc.source, params.position))
    return t.CompletionList(is_incomplete=False, items=items)


@server.feature(t.TEXT_DOCUMENT_HOVER)
def hover(ls: LanguageServer, params: t.HoverParams) -> t.Hover | None:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    text = features.hover(doc.source, features.offset_of(doc.source, params.position))
    return t.Hover(t.MarkupContent(t.MarkupKind.Markdown, text)) if text else None


@server.feature(t.TEXT_DOCUMENT_DEFINITION)
def definition(ls: LanguageServer, params: t.DefinitionParams) -> t.Location | None:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    return features.definition(doc.source, doc.path, features.offset_of(doc.source, params.position))


@server.feature(t.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: LanguageServer, params: t.DocumentFormattingParams) -> list[t.TextEdit]:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    return features.formatting(doc.source, doc.path)


def serve() -> None:
    """Serve LSP over stdin/stdout until the client exits."""
    server.start_io()
