"""Memory a training job needs, estimated before it starts, against the memory that is free.

The estimate for one architecture (jobs train one at a time, so a job needs its largest one):

    bytes = BASE_BYTES + 16 x parameters + ACTIVATION_FACTOR x 4 x batch x activations(size)   (CPU, fp32)
    bytes =              16 x parameters + ACTIVATION_FACTOR x 2 x batch x activations(size)   (CUDA, bf16 autocast)

16 bytes per parameter hold the fp32 weights, their gradients and Adam's two moments.
activations(size) is the number of values the model's leaf modules output for one image, counted
with forward hooks on the "meta" device (shapes only: no memory, milliseconds) at PROBE_SIZE px and
scaled by (size / PROBE_SIZE)^2, as convolution outputs grow with the pixel count. ACTIVATION_FACTOR
covers what autograd keeps for the backward pass plus the gradients alive at its peak; BASE_BYTES the
worker process (Python, torch, the decode cache of a small set). Both were measured against the peak
RSS of training workers on the CPU and torch's peak allocation on an H200 (see docs/training-jobs.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from melasma.errors import UserError

if TYPE_CHECKING:
    from melasma.training import TrainConfig

PROBE_SIZE = 64
ACTIVATION_FACTOR = 1.0
BASE_BYTES = 900 * 2**20
GB = 1e9


class MemoryLimitError(UserError):
    """A job that needs more memory than is free; the message gives both numbers."""


@dataclass(frozen=True)
class MemoryCheck:
    """The estimate for a job and the memory free where it would run."""

    needed: int
    free: int
    where: str  # "RAM" or "GPU memory"

    @property
    def fits(self) -> bool:
        return self.needed <= self.free

    def message(self) -> str:
        return (f"this training needs about {self.needed / GB:.1f} GB of {self.where}, "
                f"{self.free / GB:.1f} GB free: lower the image size or the batch size")


@lru_cache(maxsize=64)
def _probe(arch: str) -> tuple[int, int]:
    """(parameters, leaf-module output values for one PROBE_SIZE px image) of `arch`."""
    import torch

    # deferred: imports torch; the app process imports this module without it
    from melasma.models import create, get_spec

    with torch.device("meta"):
        model = create(arch, pretrained="off")
    counted = [0]

    def count(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            counted[0] += output.numel()

    hooks = [module.register_forward_hook(count) for module in model.modules() if not any(module.children())]
    model.train()
    size = 0
    try:
        # Fixed-size models (timm ViTs, Swin: "Input height (64) doesn't match model (224)") are
        # probed at their own input size; the others at PROBE_SIZE (or their minimum).
        for size in dict.fromkeys((max(PROBE_SIZE, get_spec(arch).min_size), _native_size(model))):
            if not size:
                continue
            counted[0] = 0
            try:
                model(torch.empty(2, 3, size, size, device="meta"))
                break
            except (AssertionError, RuntimeError, ValueError) as error:
                failure: Exception = error
        else:
            raise UserError(f"cannot estimate the memory of {arch}: a probe forward failed "
                             f"({type(failure).__name__}: {str(failure).splitlines()[0][:120]})")
    finally:
        for hook in hooks:
            hook.remove()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    per_image = counted[0] / 2 * (PROBE_SIZE / size) ** 2
    return parameters, int(per_image)


def _native_size(model: object) -> int:
    """The square input size a timm model was built for (its pretrained_cfg's input_size), else 0."""
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = config.get("input_size") if isinstance(config, dict) else None
    return int(size[-1]) if isinstance(size, tuple | list) and size and isinstance(size[-1], int) else 0


def estimate_bytes(arch: str, image_size: int, batch_size: int, *, cuda: bool = False) -> int:
    """Peak memory of training `arch` at `image_size` px with `batch_size` images a step: process RAM
    on the CPU (fp32), or GPU memory on CUDA (bf16 autocast activations, no process overhead)."""
    parameters, activations = _probe(arch)
    scaled = activations * (image_size / PROBE_SIZE) ** 2
    base, per_value = (0, 2) if cuda else (BASE_BYTES, 4)
    return int(base + 16 * parameters + ACTIVATION_FACTOR * per_value * batch_size * scaled)


def estimate_job_bytes(config: TrainConfig, *, cuda: bool = False) -> int:
    """The largest estimate over the job's architectures (they train one after another)."""
    return max(estimate_bytes(arch, config.image_size, config.batch_size, cuda=cuda) for arch in config.archs)


#: Where cgroup file systems are mounted, and the file naming this process's cgroups.
CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
#: A memory limit this high means "no limit" (cgroup v1 writes 2**63 rounded down to a page).
_NO_LIMIT = 2**60


def _own_cgroups(self_cgroup: Path) -> list[tuple[str, str]]:
    """(version, path) of this process's memory cgroups from /proc/self/cgroup: ("v2", "/a/b") from
    the "0::/a/b" line, ("v1", "/a/b") from the line whose controllers include memory."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            found.append(("v2", path))
        elif "memory" in controllers.split(","):
            found.append(("v1", path))
    return found


def _level_free(folder: Path, limit_name: str, usage_name: str) -> int | None:
    """limit - usage in one cgroup folder, None when it has no limit (or no such files)."""
    try:
        limit_text = (folder / limit_name).read_text().strip()
        usage = int((folder / usage_name).read_text().strip())
    except (OSError, ValueError):
        return None
    if not limit_text.isdigit() or int(limit_text) >= _NO_LIMIT:
        return None
    return max(int(limit_text) - usage, 0)


def cgroup_free(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int | None:
    """Bytes left under this process's own cgroup memory limit (v2 memory.max - memory.current, or
    v1 memory.limit_in_bytes - memory.usage_in_bytes), the tightest over its cgroup and every
    ancestor up to the mount root (a parent's limit binds too); None without any limit. Inside a
    container the own cgroup may be the mount root itself (cgroup namespace), which is also read."""
    frees: list[int] = []
    for version, path in _own_cgroups(self_cgroup):
        base, names = ((root, ("memory.max", "memory.current")) if version == "v2"
                       else (root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")))
        relative = Path(path.lstrip("/"))
        levels = [base / relative, *[base / parent for parent in relative.parents]]
        for folder in dict.fromkeys(levels):  # own cgroup first, then its ancestors, then the root
            if folder.is_dir():
                free = _level_free(folder, *names)
                if free is not None:
                    frees.append(free)
    return min(frees) if frees else None


def free_ram() -> int:
    """Bytes of RAM a new process can use: MemAvailable, capped by a container's limit."""
    free = math.inf
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free == math.inf:  # no /proc (macOS, Windows): what sysconf reports as free pages
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 2**62
    cgroup = cgroup_free()
    return int(min(free, cgroup if cgroup is not None else math.inf))


def check_memory(config: TrainConfig, *, device: str | None = None, free: int | None = None) -> MemoryCheck:
    """The job's estimate against the free memory of `device` ("cpu" or "cuda..."; default: the
    config's device as resolved here). `free` overrides the measured free bytes (tests)."""
    name = device or _resolved(config.device)
    if name.startswith("cuda"):
        if free is None:
            import torch

            free = int(torch.cuda.mem_get_info(torch.device(name))[0])
        return MemoryCheck(estimate_job_bytes(config, cuda=True), free, "GPU memory")
    return MemoryCheck(estimate_job_bytes(config), free_ram() if free is None else free, "RAM")


def _resolved(device: str) -> str:
    if device == "cpu":
        return "cpu"
    # deferred: imports torch; the app process imports this module without it
    from melasma.training.device import resolve_device

    return str(resolve_device(device))


def require_memory_on_submit(config: TrainConfig) -> MemoryCheck | None:
    """The check an app makes when a job is submitted: RAM for a CPU job (None for a GPU job or on
    ZeroGPU, where the app process must not touch CUDA; the worker checks those before training)."""
    if os.environ.get("SPACES_ZERO_GPU"):
        return None
    device = _resolved(config.device)
    return None if device.startswith("cuda") else require_memory(config, device=device)


def require_memory(config: TrainConfig, *, device: str | None = None, free: int | None = None) -> MemoryCheck:
    """`check_memory`, raising MemoryLimitError with both numbers when the job does not fit."""
    check = check_memory(config, device=device, free=free)
    if not check.fits:
        raise MemoryLimitError(check.message())
    return check
