"""GRPO and SFT steps under two CPU ranks (gloo): a rank whose rollouts are all filtered out still joins
every gradient all-reduce, and both ranks end the step with identical weights."""

import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dist_helpers import free_port, join_as_rank

HERE = Path(__file__).parent


def _worker(rank: int, port: int, tmp: str, kind: str) -> None:
    join_as_rank(rank, port)
    sys.path.insert(0, str(HERE))
    from runtime.data import Sample

    if kind == "grpo":
        from test_grpo_trainer import make_ctx

        from runtime.stages.grpo import GRPOTrainer

        ctx = make_ctx(Path(tmp) / f"r{rank}", dynamic_filter=True, micro_batch=2)
        # rank 0's groups carry signal (2 micro-batches); rank 1's are all filtered (0 micro-batches)
        ctx.rewards["toy"] = (lambda s, c: [float(i % 2) for i in range(len(c))]) if rank == 0 else \
            (lambda s, c: [1.0] * len(c))
        trainer = GRPOTrainer(ctx)
        batch = [Sample(id=f"toy/train/{rank}", domain="toy", prompt=f"p{rank}")]
    else:
        from test_sft_trainer import make_ctx

        from runtime.stages.sft import SFTTrainer

        ctx = make_ctx(Path(tmp) / f"r{rank}", packing=False)
        trainer = SFTTrainer(ctx)
        # rank 0 has 3 micro-batches of 2, rank 1 only 1
        n = 6 if rank == 0 else 2
        batch = [Sample(id=f"toy/train/{i}", domain="toy", prompt=f"{i}+1=", answer=str(i + 1)) for i in range(n)]
    before = [p.detach().clone() for p in ctx.policy.parameters()]
    metrics = trainer.step(0, batch)
    after = torch.cat([p.detach().flatten() for p in ctx.policy.parameters()])
    changed = any(not torch.equal(a, b.detach()) for a, b in zip(before, ctx.policy.parameters()))
    torch.save({"after": after, "changed": changed, "metrics": metrics}, Path(tmp) / f"out{rank}.pt")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["grpo", "sft"])
def test_two_ranks_stay_in_sync(tmp_path, kind):
    mp.spawn(_worker, args=(free_port(), str(tmp_path), kind), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"out{r}.pt") for r in (0, 1))
    assert r0["changed"] and r1["changed"]
    torch.testing.assert_close(r0["after"], r1["after"], atol=0, rtol=0)
    if kind == "grpo":
        assert r0["metrics"]["filtered_frac"] == 0.0 and r1["metrics"]["filtered_frac"] == 1.0
