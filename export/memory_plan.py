"""The GPU memory a TensorRT repository holds once Triton has loaded it, and the CUDA memory pool its transfers want.

How Triton holds a TensorRT engine (tensorrt_backend, `ModelInstanceState::InitOptimizationProfiles`): one
execution context per optimization profile the instance lists. In Triton 24.10 every context is created with
TensorRT's default STATIC allocation, the activation memory of the engine's *largest* profile, so an engine of
P profiles holds P x its largest profile's activations, plus its weights. From Triton 25.05 the model config
parameter `execution_context_allocation_strategy: ON_PROFILE_CHANGE` makes each context allocate for its own
profile, when first used: then the engine holds its weights plus the profiles requests actually used. The
export writes that parameter (24.10 ignores it) and plans for the release it targets.

The plan is made at export from the built engines (`i2v.export.tensorrt_engines.engine_memory` reads each
profile's activation memory from TensorRT), printed, written to `<repository>/memory_plan.json`, and checked against
`--gpu-memory-budget`: a repository that cannot load on the GPU fails at export, naming its biggest parts,
instead of at the first deployment. Narrower shapes (fewer resolutions, fewer frames) are the remedy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from i2v.export.options import ALLOCATIONS, DEFAULT_ALLOCATION
from i2v.export.profiles import DEFAULT_SUPPORTED_SHAPES, dim_ranges
from i2v.model.info import SupportedShapes
from i2v.model.parts import PartSpec

GIB = 2**30
MIB = 2**20
PLAN_FILE = "memory_plan.json"


class GpuMemoryBudgetError(RuntimeError):
    """The repository would hold more GPU memory than the budget allows."""


@dataclass(frozen=True)
class EngineMemory:
    """One engine as Triton holds it."""

    part: str
    weights_bytes: int  # the serialized engine's size: its weights, mostly
    profile_bytes: tuple[int, ...]  # activation memory of each optimization profile (TensorRT's own figure)
    contexts: int  # execution contexts one instance creates: one per listed profile

    def held_bytes(self, allocation: str = DEFAULT_ALLOCATION) -> int:
        """Weights plus activations: every context at the largest profile (static), or each at its own."""
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
        if allocation == "static":
            return self.weights_bytes + self.contexts * max(self.profile_bytes, default=0)
        return self.weights_bytes + sum(self.profile_bytes)


@dataclass(frozen=True)
class MemoryPlan:
    engines: tuple[EngineMemory, ...]
    allocation: str
    budget_bytes: int | None

    @property
    def held_bytes(self) -> int:
        return sum(e.held_bytes(self.allocation) for e in self.engines)

    def check(self) -> MemoryPlan:
        """Raise `GpuMemoryBudgetError` naming the biggest engines when the plan exceeds the budget."""
        if self.budget_bytes is not None and self.held_bytes > self.budget_bytes:
            biggest = sorted(self.engines, key=lambda e: e.held_bytes(self.allocation), reverse=True)[:2]
            names = ", ".join(f"{e.part} {e.held_bytes(self.allocation) / GIB:.1f} GiB" for e in biggest)
            raise GpuMemoryBudgetError(
                f"the engines would hold {self.held_bytes / GIB:.1f} GiB of GPU memory once loaded "
                f"({self.allocation} allocation), over the budget of {self.budget_bytes / GIB:.1f} GiB; the biggest: "
                f"{names}. Build for fewer resolutions or frames (--resolutions, --max-frames), or raise "
                "--gpu-memory-budget. The plan:\n" + self.describe()
            )
        return self

    def describe(self) -> str:
        lines = [f"{'part':<14}{'weights':>10}{'profiles':>10}{'largest':>10}{'contexts':>10}{'held':>10}  (GiB)"]
        for e in self.engines:
            largest = max(e.profile_bytes, default=0)
            lines.append(
                f"{e.part:<14}{e.weights_bytes / GIB:>10.2f}{len(e.profile_bytes):>10}{largest / GIB:>10.2f}"
                f"{e.contexts:>10}{e.held_bytes(self.allocation) / GIB:>10.2f}"
            )
        budget = f" of a {self.budget_bytes / GIB:.1f} GiB budget" if self.budget_bytes is not None else ""
        lines.append(f"total held once loaded ({self.allocation} allocation): {self.held_bytes / GIB:.2f} GiB{budget}")
        return "\n".join(lines)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / PLAN_FILE
        data = {**asdict(self), "held_bytes": self.held_bytes}
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path


def transfer_bytes(spec: PartSpec, dims: Mapping[str, int]) -> int:
    """Bytes of one call's inputs and outputs at `dims` (what crosses between the BLS and the part)."""
    total = 0
    for tensor in (*spec.inputs, *spec.outputs):
        count = math.prod(d if isinstance(d, int) else dims[d] for d in tensor.dims)
        total += count * np.dtype(tensor.dtype).itemsize
    return total


def cuda_memory_pool_bytes(specs: Mapping[str, PartSpec], shapes: SupportedShapes, vae_scale_factor: int) -> int:
    """Triton's CUDA memory pool for the BLS's GPU transfers: twice the largest single call's inputs and outputs
    over the supported shapes (a call's tensors and the previous call's may be alive together), rounded up to
    64 MiB. A tensor that does not fit is not an error: the Python backend then falls back to cudaMalloc and
    CUDA IPC per transfer, which costs time, so the pool is sized to hold the largest call."""
    largest = 0
    for name, spec in specs.items():
        for height, width in shapes.resolutions:
            ranges = dim_ranges(name, shapes, height, width, vae_scale_factor)
            largest = max(largest, transfer_bytes(spec, {d: r[2] for d, r in ranges.items()}))
    return math.ceil(2 * largest / (64 * MIB)) * 64 * MIB


def default_cuda_memory_pool_bytes() -> int:
    """The pool for I2VGen-XL at the default supported shapes (the number compose and Kubernetes pass)."""
    from i2v.export.sources import FULL_SIZE_VAE_SCALE_FACTOR, full_size_specs

    return cuda_memory_pool_bytes(full_size_specs(), DEFAULT_SUPPORTED_SHAPES, FULL_SIZE_VAE_SCALE_FACTOR)


def plan(
    engines: Sequence[EngineMemory], *, allocation: str = DEFAULT_ALLOCATION, budget_gib: float | None = None
) -> MemoryPlan:
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    budget = None if budget_gib is None else int(budget_gib * GIB)
    return MemoryPlan(tuple(engines), allocation, budget)
