"""The report tests reuse the synthetic cascade run of tests/distill (one definition of it)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distill"))
