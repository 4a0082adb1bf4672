"""Rank-0 progress lines: step, loss, reward, tokens/s and ETA."""

from __future__ import annotations

import io
import logging

import pytest

from runtime.progress import StageProgress, format_metrics


def test_format_metrics_shows_known_keys_only() -> None:
    text = format_metrics({"loss": 0.5, "reward_mean": 0.25, "tokens_per_s": 1234.4, "other": 1, "kl": "x"})
    assert text == "loss=0.5 reward=0.250 tok/s=1234"


def test_plain_lines_when_not_a_terminal_and_silent_when_disabled() -> None:
    out = io.StringIO()
    p = StageProgress("rl", start=2, total=5, enabled=True, stream=out)
    p.update(2, {"loss": 1.0})
    p.note("eval done")
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[rl] step 3/5 loss=1 eta=") and lines[1] == "eval done"
    quiet = io.StringIO()
    q = StageProgress("rl", start=0, total=5, enabled=False, stream=quiet)
    q.update(0, {"loss": 1.0})
    assert quiet.getvalue() == ""


def test_eta_from_steps_run_in_this_process() -> None:
    p = StageProgress("s", start=4, total=10, enabled=False)
    assert p.eta_s(4) is None
    p.t0 -= 6.0  # six seconds for the two steps 4 and 5
    assert abs(p.eta_s(6) - 12.0) < 0.5


def test_stage_tags_render_literally_on_a_terminal() -> None:
    import os
    import pty
    import subprocess
    import sys

    code = ("from runtime.progress import StageProgress; p = StageProgress('s1', 0, 4, enabled=True); "
            "p.update(0, {'loss': 1.0}); p.note('[s1] eval at step 1: d.e pass@1 = 0.500'); p.close()")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the pty's other end closed: the child is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "[s1] eval at step 1: d.e pass@1 = 0.500" in out, out


@pytest.mark.parametrize("tied", [True, False])
def test_shared_tensor_warning_is_silenced_only_for_tied_embeddings(tied: bool, caplog: pytest.LogCaptureFixture) -> None:
    import torch
    from accelerate import PartialState
    from accelerate.utils.other import clean_state_dict_for_safetensors
    from transformers import LlamaConfig, LlamaForCausalLM

    from runtime.loop import tied_weights_quiet

    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=64, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    shared = torch.zeros(4)
    PartialState(cpu=True)  # accelerate's logger needs it, as inside a stage
    with caplog.at_level(logging.WARNING), tied_weights_quiet(model):
        clean_state_dict_for_safetensors({"a": shared, "b": shared})
    assert ("Removed shared tensor" in caplog.text) is not tied
