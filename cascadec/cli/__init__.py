"""The ``cascadec`` command line: compile, lint, plan, graph, fmt, explain, run, status, cancel, report.

Exit codes (ruff/ty convention):

====  =====================================================================
0     success; warnings allowed unless ``--warnings-as-errors``
1     findings: error diagnostics (or warnings with ``-W``), files ``fmt --check`` would change
2     usage, configuration or I/O error, or an internal error of cascadec
3     ``run`` only: the runtime failed after a successful compile
====  =====================================================================

No Python traceback reaches the user: every command runs under `base.guarded`, which turns an unexpected
exception into ``internal error: ... (please report)`` and exit 2 (``CASCADEC_DEBUG=1`` shows it).

Modules: `base` (the typer app, exit codes, output formats, error plumbing), `views` (tables and diagnostics the
commands print), `commands` (one function per command; the runtime is reached through `runtime.api` only).
"""

from cascadec.cli.commands import app, main

__all__ = ["app", "main"]
