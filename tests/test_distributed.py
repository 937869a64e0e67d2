"""Multi-GPU code path: torchrun with 2 CPU processes (gloo) through stnlp.runtime.distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stnlp.runtime import distributed
from stnlp.runtime.distributed import DistInfo, dist_info, launch_command, rank_context
from stnlp.runtime.training import METRICS_FILE, TrainingContext, TrainingOutcome

REPO = Path(__file__).resolve().parents[1]
TRUE_WEIGHTS = [1.0, 2.0, -1.0]


def ddp_fit(ctx: TrainingContext) -> TrainingOutcome:
    """A DDP linear regression: each rank fits its own data shard; gradients are averaged."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    info = distributed.init_from_env()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    net = DistributedDataParallel(model) if info.distributed else model
    shard = torch.Generator().manual_seed(100 + info.rank)
    x = torch.randn(32, 3, generator=shard)
    y = x @ torch.tensor(TRUE_WEIGHTS).unsqueeze(1) + 0.5
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    for step in range(int(ctx.param("steps", 10))):
        loss = torch.nn.functional.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctx.log_metrics(step=step + 1, loss=loss.item())
    weights = [v for p in model.parameters() for v in p.detach().flatten().tolist()]
    result = {"rank": info.rank, "world_size": info.world_size, "weights": weights,
              "first_x": x[0].tolist()}
    (ctx.output_dir / "model.json").write_text(json.dumps(result))
    return TrainingOutcome(metrics={"world_size": info.world_size, "loss": loss.item()})


def _work(tmp_path: Path, steps: int = 10) -> Path:
    ctx = TrainingContext.in_directory(
        tmp_path / "job", "run-1", "ddp-fit", {"steps": steps}, tmp_path / "data"
    )
    work = tmp_path / "work.json"
    body = {"entrypoint": "tests.test_distributed:ddp_fit", "context": json.loads(ctx.to_json())}
    work.write_text(json.dumps(body))
    return work


def _context(work: Path) -> TrainingContext:
    return TrainingContext.from_json(json.dumps(json.loads(work.read_text())["context"]))


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_launch_command_uses_torchrun_only_for_several_gpus():
    assert launch_command(["w.json"], 1) == [sys.executable, "-m", "stnlp.runtime.worker", "w.json"]
    command = launch_command(["w.json"], 4)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in command
    assert command[-3:] == ["-m", "stnlp.runtime.distributed", "w.json"]


def test_rank_context_keeps_rank_zero_and_moves_the_others(tmp_path):
    ctx = TrainingContext.in_directory(tmp_path / "job", "r", "j", {}, tmp_path / "data")
    assert rank_context(ctx, DistInfo(0, 0, 2)) is ctx
    other = rank_context(ctx, DistInfo(1, 1, 2))
    assert other.output_dir == tmp_path / "job" / "ranks" / "1" / "output"
    assert other.metrics_path == tmp_path / "job" / "ranks" / "1" / METRICS_FILE
    assert other.checkpoint_dir == ctx.checkpoint_dir
    assert dist_info({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}) == DistInfo(3, 1, 4)


def test_two_gloo_processes_train_one_model_through_torchrun(tmp_path):
    work = _work(tmp_path)
    done = _run(launch_command([str(work)], gpu_count=2))
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert outcome["metrics"]["world_size"] == 2
    rank0 = json.loads((tmp_path / "job" / "output" / "model.json").read_text())
    rank1 = json.loads((tmp_path / "job" / "ranks" / "1" / "output" / "model.json").read_text())
    assert (rank0["rank"], rank1["rank"]) == (0, 1)
    assert rank0["first_x"] != rank1["first_x"], "each rank must see its own shard"
    assert rank0["weights"] == pytest.approx(rank1["weights"], abs=1e-6)
    assert len(_context(work).read_metrics()) == 10

    alone = _work(tmp_path / "alone")
    single = _run(launch_command([str(alone)], gpu_count=1))
    assert single.returncode == 0, single.stdout + single.stderr
    solo = json.loads((tmp_path / "alone" / "job" / "output" / "model.json").read_text())
    assert solo["world_size"] == 1
    assert solo["weights"] != pytest.approx(rank0["weights"], abs=1e-4), (
        "averaged gradients over two shards must differ from one shard's"
    )
