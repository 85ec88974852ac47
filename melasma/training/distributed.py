"""Data-parallel training across processes (`torchrun --nproc-per-node N -m melasma train ...`).

`setup()` reads the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, as torchrun sets them) and
joins the process group: NCCL with one GPU per process, gloo on the CPU. Without a launcher it
returns `SINGLE`, and every helper below is then a no-op, so the training loop has one code path.

What is split: the train and validation images, row `i` on rank `i % world_size` (each rank decodes
and holds only its shard on its device). Every rank draws the same global batch order and the same
augmentation as one process would, and trains on the rows of each global batch it holds; the loss is
scaled so that DDP's gradient average equals one process's gradient over the whole global batch.
Validation outputs are gathered, so every rank sees the whole validation set's loss. Rank 0 holds
the test split, writes metrics, checkpoints and figures, and decides cancellation and early stopping
(broadcast to the others).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

#: Seconds a collective waits for the other ranks before it fails (rank 0 writes figures and runs the
#: bootstrap between two collectives); a rank that died is usually noticed at once (closed socket).
COLLECTIVE_TIMEOUT_S = 600


@dataclass(frozen=True)
class Context:
    """This process's place in the run: rank `rank` of `world_size` (1: a plain single process)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and sends events (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


SINGLE = Context()


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_rank() -> int:
    """The rank torchrun gave this process (0 without a launcher), before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def processes_for(requested: int, device: str) -> int:
    """How many processes to train with: `requested`, or for 0 one per GPU when `device` ("auto",
    "cuda") may use several GPUs, else one."""
    if requested > 0:
        return requested
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return max(torch.cuda.device_count(), 1)
    return 1


def launch_command(processes: int, module: str, args: list[str]) -> list[str]:
    """torchrun (this Python's `torch.distributed.run`) starting `processes` copies of `python -m
    module args` on this machine; a free rendezvous port is picked (--standalone)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", module, *args]


def setup(device: torch.device) -> Context:
    """Join the process group torchrun describes (or `SINGLE` without one). On CUDA each process takes
    GPU LOCAL_RANK (nccl); elsewhere gloo. `device` must be the one `local_device` returned."""
    if not launched():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
                                device_id=device if device.type == "cuda" else None)
    return Context(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """This process's device: with several processes on CUDA, GPU LOCAL_RANK (one GPU per process)."""
    if device.type != "cuda" or not launched():
        return device
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ValueError(f"process {index} of this machine needs GPU {index}, but only "
                         f"{torch.cuda.device_count()} GPU(s) exist: lower --nproc-per-node")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def teardown(ctx: Context) -> None:
    """Leave the process group (after the last collective of the run)."""
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, ctx: Context) -> torch.Tensor:
    """The rows of an `n`-row split that this rank holds: rank, rank + world_size, ..."""
    return torch.arange(ctx.rank, n, ctx.world_size)


def wrap(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """`model` for training: unchanged for one process; else DistributedDataParallel, with batch norm
    synchronised across GPUs (on the CPU, torch has no SyncBatchNorm: each rank's statistics are its own)."""
    if not ctx.active:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (what is evaluated and saved)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def sum_all(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """`values` summed over all ranks (the tensor itself for one process)."""
    if ctx.active:
        values = values.clone()
        dist.all_reduce(values)
    return values


def from_main(flag: bool, ctx: Context, device: torch.device) -> bool:
    """Rank 0's `flag` on every rank (cancellation and early stopping are decided there)."""
    if not ctx.active:
        return flag
    value = torch.tensor([int(flag) if ctx.is_main else 0], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def gather_rows(local: torch.Tensor, n: int, ctx: Context, device: torch.device) -> torch.Tensor:
    """The whole split's rows (n, ...) on every rank, from each rank's `local` rows of its `shard`;
    exchanged on `device` (NCCL needs the GPU), returned where `local` is."""
    if not ctx.active:
        return local
    size = -(-n // ctx.world_size)  # the largest shard
    padded = torch.zeros((size, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[:len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    whole = local.new_empty((n, *local.shape[1:]))
    for rank, part in enumerate(parts):
        rows = torch.arange(rank, n, ctx.world_size)
        whole[rows] = part[:len(rows)].to(local.device)
    return whole


#: what gloo and NCCL say when a collective fails because another rank is gone
PEER_LOST_SIGNS = ("Connection closed by peer", "Connection reset by peer", "NCCL error", "timed out")


def peer_lost(error: BaseException) -> str | None:
    """For a collective that failed because another rank is gone (its connection closed, NCCL's
    remote error, a collective timeout): that reason in a few words; None for other errors."""
    if not isinstance(error, RuntimeError):
        return None
    text = str(error)
    sign = next((sign for sign in PEER_LOST_SIGNS if sign.lower() in text.lower()), None)
    if sign is None and isinstance(error, dist.DistError):
        sign = text.splitlines()[0][:120] if text else type(error).__name__
    return sign.lower() if sign else None


def barrier(ctx: Context) -> None:
    """Wait until every rank gets here (the others wait while rank 0 writes an architecture's results)."""
    if ctx.active:
        dist.barrier()
