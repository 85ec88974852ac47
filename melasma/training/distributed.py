"""Data-parallel training across processes (`torchrun --nproc-per-node N -m melasma train ...`).

`setup()` reads the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, as torchrun sets them) and
joins the process group: NCCL with one GPU per process, gloo on the CPU. Without a launcher it
returns `SINGLE`, and every helper below is then a no-op, so the training loop has one code path.

What is split: the train and validation images, row `i` on rank `i % world_size` (each rank decodes
and holds only its shard on its device). Every rank draws the same global batch order and the same
augmentation as one process would, and trains on the rows of each global batch it holds; the loss is
scaled so that DDP's gradient average equals one process's gradient over the whole global batch.
Batch norm is synchronised (GPU: SyncBatchNorm; CPU: `CpuSyncBatchNorm`) and dropout masks are
drawn for the whole global batch (`BatchDropout`), so batch statistics and masks are one process's.
Validation outputs are gathered, so every rank sees the whole validation set's loss. Rank 0 holds
the test split, writes metrics, checkpoints and figures, and decides cancellation and early stopping
(broadcast to the others).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from melasma.errors import UserError

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
        raise UserError(f"process {index} of this machine needs GPU {index}, but only "
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


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) with its gradient, also summed: every rank's loss reaches every rank's input."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor) -> torch.Tensor:
        total = value.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def _sum_across_ranks(value: torch.Tensor) -> torch.Tensor:
    return cast(torch.Tensor, _SumAcrossRanks.apply(value))


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the whole global batch across gloo processes, as
    one process's would (torch's SyncBatchNorm runs on GPUs only): per-channel sums, then sums of
    squared deviations, all-reduced with autograd. Shares the parameters and buffers of the layer it
    stands in for (same state-dict keys), and keeps timm's BatchNormAct2d `drop` and `act`."""

    def __init__(self, source: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
        self.weight, self.bias = source.weight, source.bias
        self.running_mean, self.running_var = source.running_mean, source.running_var
        self.num_batches_tracked = source.num_batches_tracked
        drop, act = getattr(source, "drop", None), getattr(source, "act", None)
        self.drop = drop if isinstance(drop, nn.Module) else nn.Identity()
        self.act = act if isinstance(act, nn.Module) else nn.Identity()

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.track_running_stats:
            y = nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                         self.eps)
            return self.act(self.drop(y))
        all_reduce = _sum_across_ranks if dist.is_initialized() else (lambda value: value)
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        shape = (1, channels) + (1,) * (x.dim() - 2)
        totals = all_reduce(torch.cat([x.sum(dims), x.new_tensor([x.numel() / channels])]))
        count = totals[-1]
        mean = totals[:channels] / count
        var = all_reduce(((x - mean.view(shape)) ** 2).sum(dims)) / count
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        tracked = self.num_batches_tracked
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None \
                and tracked is not None:
            with torch.no_grad():
                tracked.add_(1)
                factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * count / (count - 1).clamp(min=1), alpha=factor)
        return self.act(self.drop(y))


class BatchDropout(nn.Dropout):
    """nn.Dropout whose mask is drawn for the whole global batch from one seeded generator and cut
    to this rank's rows (`rows` of a batch of `size`), so N processes drop what one process drops."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__(p)
        self.generator = generator
        self.rows: torch.Tensor | None = None
        self.size = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        rows = self.rows if self.rows is not None else torch.arange(len(x), device=x.device)
        size = self.size if self.rows is not None else len(x)
        keep = torch.empty((size, *x.shape[1:]), device=x.device, dtype=x.dtype)
        keep.bernoulli_(1 - self.p, generator=self.generator)
        return x * keep[rows] * (1 / (1 - self.p) if self.p < 1 else 0.0)


@dataclass
class Prepared:
    """A model made ready to train: `net` (DDP when several processes) and the layers swapped in for
    it (batch norm synchronised on the CPU, `BatchDropout`); `close()` puts the originals back."""

    net: nn.Module
    dropouts: list[BatchDropout]
    swapped: list[tuple[nn.Module, str, nn.Module]]

    def set_batch(self, rows: torch.Tensor, size: int) -> None:
        """Before each step: this rank's rows (positions in the global batch) and the batch's size."""
        for layer in self.dropouts:
            layer.rows, layer.size = rows, size

    def close(self) -> None:
        for parent, name, original in self.swapped:
            setattr(parent, name, original)


def _swap(model: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> list[tuple[nn.Module, str, nn.Module]]:
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                swapped.append((parent, name, child))
    return swapped


def prepare(model: nn.Module, ctx: Context, device: torch.device, seed: int) -> Prepared:
    """`model` ready to train like one process on the global batch: every `nn.Dropout` module becomes
    a `BatchDropout` (one mask stream for the global batch, also in one process); with several
    processes batch norm is synchronised (GPU: timm's `convert_sync_batchnorm`, which keeps
    BatchNormAct2d's activation; CPU: `CpuSyncBatchNorm`) and the model is wrapped in DDP.
    Dropout called as a function (timm heads with `drop_rate` > 0) is not covered."""
    generator = torch.Generator(device=device).manual_seed(seed + 0x5EED)
    dropouts: list[BatchDropout] = []

    def dropout(child: nn.Module) -> nn.Module | None:
        if type(child) is not nn.Dropout:
            return None
        dropouts.append(BatchDropout(child.p, generator))
        return dropouts[-1]

    swapped = _swap(model, dropout)
    if not ctx.active:
        return Prepared(model, dropouts, swapped)
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
        return Prepared(nn.parallel.DistributedDataParallel(model, device_ids=[device.index]), dropouts, swapped)
    swapped += _swap(model, lambda child: CpuSyncBatchNorm(child)
                     if isinstance(child, nn.modules.batchnorm._BatchNorm) else None)
    return Prepared(nn.parallel.DistributedDataParallel(model), dropouts, swapped)


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
