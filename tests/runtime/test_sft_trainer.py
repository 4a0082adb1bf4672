"""SFT: completions, packing with correct attention boundaries, and the trainer's step."""

from pathlib import Path

import pytest
import torch

from cascadec.contract.plan import DataSource, Domain, ModelRef, Optim, Plan, RewardSpec, Schedule, SFTParams, Stage
from runtime.chat import SFTExample
from runtime.data import Sample
from runtime.entry import build_context
from runtime.logprobs import pad_right, token_logprobs
from runtime.models import load_model
from runtime.stages import TRAINERS
from runtime.stages.sft import SFTDataError, SFTTrainer, pack, packed_tensors, sft_completion
from runtime.state import RunDir

torch.set_num_threads(2)

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 2, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1})
BATCH = [Sample(id=f"toy/train/{i}", domain="toy", prompt=f"{i}+1=", answer=str(i + 1)) for i in range(4)]


def make_ctx(tmp_path: Path, *, packing: bool, max_seq: int = 512):
    stage = Stage(name="sft", kind="sft", parent="base", domains={"toy": 1.0},
                  params=SFTParams(optim=Optim(lr=Schedule(peak=1e-2)), steps=12, batch_size=4, micro_batch=2,
                                   packing=packing, max_seq=max_seq))
    dom = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": "x", "answer": "1"}]),
                 reward=RewardSpec(kind="exact"), system="Reply with the answer.")
    plan = Plan(name="t", base=TINY, domains={"toy": dom}, stages=[stage])
    return build_context(plan, stage, RunDir(tmp_path / "run"))


def test_completion_source():
    assert sft_completion(Sample(id="a", domain="d", prompt="p", answer=7)) == "Answer: 7"
    assert sft_completion(Sample(id="a", domain="d", prompt="p", answer=7, meta={"completion": "Seven."})) == "Seven."
    with pytest.raises(SFTDataError, match="sample `a` has no `completion`"):
        sft_completion(Sample(id="a", domain="d", prompt="p"))


def test_pack_fills_rows_in_order():
    exs = [SFTExample([1] * n, [1] * n, False) for n in (5, 4, 3, 6)]
    assert [[len(e.input_ids) for e in row] for row in pack(exs, 10)] == [[5, 4], [3, 6]]


def test_packed_rows_do_not_attend_across_examples():
    model, _ = load_model(TINY, seed=1)
    gen = torch.Generator().manual_seed(0)
    exs = [SFTExample(torch.randint(3, 200, (n,), generator=gen).tolist(), [0] * 2 + [1] * (n - 2), False)
           for n in (6, 5, 7)]
    ids, mask, pos = packed_tensors([exs[:2], exs[2:]], pad_id=0)
    packed = token_logprobs(model, ids, None, mask, position_ids=pos).logprobs
    for row, offset, ex in [(0, 0, exs[0]), (0, 6, exs[1]), (1, 0, exs[2])]:
        alone = token_logprobs(model, pad_right([ex.input_ids], 0), torch.ones(1, len(ex.input_ids)),
                               torch.tensor([ex.loss_mask])).logprobs[0]
        torch.testing.assert_close(packed[row, offset:offset + len(ex.input_ids)], alone, atol=1e-5, rtol=1e-5)


def test_packing_gives_the_same_loss_and_sft_learns(tmp_path):
    assert TRAINERS["sft"] is SFTTrainer
    packed = SFTTrainer(make_ctx(tmp_path / "a", packing=True))
    plain = SFTTrainer(make_ctx(tmp_path / "b", packing=False))
    first = packed.step(0, BATCH)
    assert first["loss"] == pytest.approx(plain.step(0, BATCH)["loss"], rel=1e-5)
    assert first["rows"] == 1 and plain.ctx.scheduler.last_epoch == 1
    assert first["tokens"] == sum(len(f"Answer: {s.answer}") + 1 for s in BATCH)  # bytes + EOS
    losses = [packed.step(step, BATCH)["loss"] for step in range(1, 12)]
    assert losses[-1] < 0.5 * first["loss"]
