"""Multi-GPU training: run a job's entrypoint under torchrun (DDP), one process per GPU.

A job spec with ``gpu_count > 1`` is launched as
``python -m torch.distributed.run --standalone --nproc-per-node N -m
stnlp.runtime.distributed ...``.
Each rank initialises the process group from the environment torchrun sets (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), with NCCL when each rank has
a GPU and gloo otherwise, then calls the same entrypoint with a context of its own: rank 0
keeps the run's output and metrics paths (what gets published); other ranks write theirs under
``ranks/<rank>/`` so they never clobber rank 0's. The checkpoint folder is shared: entrypoints
save checkpoints on rank 0 only (:func:`is_main`) and every rank reads them on resume.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from stnlp.common.errors import UserError
from stnlp.runtime import worker
from stnlp.runtime.environ import parse_number
from stnlp.runtime.training import METRICS_FILE, TrainingContext


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: global rank, local rank, world size."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def dist_info(env: dict[str, str] | None = None) -> DistInfo:
    """Read the rank layout torchrun puts in the environment (a single process without it)."""
    env = os.environ if env is None else env

    def number(name: str, default: int, low: int) -> int:
        return parse_number(name, env[name], int, low, 4096) if name in env else default

    info = DistInfo(rank=number("RANK", 0, 0), local_rank=number("LOCAL_RANK", 0, 0),
                    world_size=number("WORLD_SIZE", 1, 1))
    if info.rank >= info.world_size:
        raise UserError(f"environment RANK={info.rank} must be below WORLD_SIZE={info.world_size}")
    return info


def init_from_env() -> DistInfo:
    """Join the process group torchrun describes; idempotent.

    NCCL when every local rank has a GPU of its own, else gloo (CPU tensors), so the same code
    runs on a GPU instance and in a CPU test.
    """
    import torch
    import torch.distributed as dist

    info = dist_info()
    if info.distributed and not dist.is_initialized():
        local_ranks = info.world_size
        if "LOCAL_WORLD_SIZE" in os.environ:
            local_ranks = parse_number("LOCAL_WORLD_SIZE", os.environ["LOCAL_WORLD_SIZE"], int, 1,
                                       4096)
        if torch.cuda.is_available() and torch.cuda.device_count() >= local_ranks:
            torch.cuda.set_device(info.local_rank)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return info


def is_main() -> bool:
    """True on rank 0 (and in a single-process run): the rank that saves and reports."""
    return dist_info().rank == 0


def shutdown() -> None:
    """Leave the process group if one was joined."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank_context(ctx: TrainingContext, info: DistInfo) -> TrainingContext:
    """The context for one rank: rank 0's is ``ctx``; others write under ``ranks/<rank>/``."""
    if info.rank == 0:
        return ctx
    root = ctx.output_dir.parent / "ranks" / str(info.rank)
    ranked = replace(
        ctx, output_dir=root / "output", metrics_path=root / METRICS_FILE
    )
    ranked.output_dir.mkdir(parents=True, exist_ok=True)
    return ranked


def launch_command(worker_args: list[str], gpu_count: int) -> list[str]:
    """The command running the worker: plain for 0-1 GPU, under torchrun for more."""
    if gpu_count <= 1:
        return [sys.executable, "-m", "stnlp.runtime.worker", *worker_args]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={gpu_count}", "-m", "stnlp.runtime.distributed", *worker_args,
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    """One torchrun rank: join the group, run ``stnlp.runtime.worker`` on this rank's work file."""
    if len(argv) != 1:
        print("usage: torchrun ... -m stnlp.runtime.distributed WORK_JSON", file=sys.stderr)
        return 2
    work_file = Path(argv[0])
    info = init_from_env()
    try:
        if info.rank != 0:
            work = json.loads(work_file.read_text(encoding="utf-8"))
            ctx = rank_context(TrainingContext.from_json(json.dumps(work["context"])), info)
            work_file = ctx.output_dir.parent / "work.json"
            work["context"] = json.loads(ctx.to_json())
            work_file.write_text(json.dumps(work), encoding="utf-8")
        return worker.main([str(work_file)])
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
