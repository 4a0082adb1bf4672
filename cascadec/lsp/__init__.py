"""The `.cascade` language server (`cascadec lsp`, on pygls): diagnostics from the compiler, completion,
hover, go-to-definition and formatting. Needs the `lsp` extra (`pip install 'cascadec[lsp]'`)."""
