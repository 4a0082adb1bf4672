"""`UserError`: the base of every error whose message is written for the user.

Its message follows the diagnostic style (lowercase, identifiers in backticks, a ``help:`` line that says how
to fix it); the CLI and the stage process print it without a traceback and exit 2 (usage) or mark the stage
failed. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user must fix (bad data, a checkpoint that does not load, a reward that raises, ...)."""
