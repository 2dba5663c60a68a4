"""Check exported ONNX parts against the PyTorch modules they came from, in ONNX Runtime on CPU.

An export can succeed and still be wrong: a bin layout or a repeat axis baked in at the trace shape shows up
only at other shapes (docs/export.md). So every part is run at two resolutions and two frame counts, all different
from the export's sample shape, and compared with the pipeline's own modules (the UNet with its original
`AdaptiveAvgPool2d`, so the exact replacement is checked too).

ONNX Runtime runs here directly rather than through polygraphy's comparator: polygraphy's PyTorch runner
moves every input to CUDA, and this check must run on CPU-only machines.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tqdm.auto import tqdm

from i2v.export.sample_inputs import part_inputs
from i2v.model.modules import part_module
from i2v.model.parts import PART_NAMES, SIZE_FREE_SPECS, specs_for_pipeline

# Two resolutions and two frame counts, each axis once away from the export's sample (64x96, 8 frames), with
# small latents (8x8, 8x12) because ONNX Runtime on CPU is memory-hungry on the UNet. The UNet always gets
# batch 2, the cond + uncond batch of guidance; the other parts see batch 1 and 2.
CHECK_SHAPES: tuple[dict[str, int], ...] = (
    {"batch": 1, "height": 64, "width": 64, "frames": 8},
    {"batch": 2, "height": 64, "width": 96, "frames": 16},
)
UNET_BATCH = 2


class ExportCheckError(RuntimeError):
    """Raised when an exported part differs from PyTorch by more than its tolerance."""

    def __init__(self, failures: Sequence[PartCheck]) -> None:
        self.failures = list(failures)
        parts = sorted({c.name for c in self.failures})
        super().__init__(f"ONNX export differs from PyTorch in {', '.join(parts)}:\n" + format_checks(self.failures))


@dataclass
class PartCheck:
    """One part at one shape: the largest abs difference over its outputs, and whether it is in tolerance."""

    name: str
    shape: str
    max_abs_err: float
    tolerance: float
    ok: bool
    detail: str = ""  # why ONNX Runtime gave no comparable output, when it did not


def check_part(
    pipe, name: str, onnx_path: Path, shapes: Iterable[dict[str, int]], *, tolerance: float | None = None
) -> list[PartCheck]:
    """Run `onnx_path` in ONNX Runtime and the pipeline's module at each shape; one `PartCheck` per shape.

    Each shape is `part_inputs` keywords (batch, height, width, frames; the UNet's batch is forced to 2).
    A run that fails or returns the wrong shape is a failed check with an infinite error, not an exception,
    so one bad part does not hide the figures of the others.
    """
    spec = specs_for_pipeline(pipe)[name]
    tolerance = spec.onnx_tolerance if tolerance is None else tolerance
    output_names = [t.name for t in spec.outputs]
    module = part_module(pipe, name)
    session = _session(onnx_path, name)
    checks: list[PartCheck] = []
    try:
        for seed, shape in enumerate(shapes):
            if name == "unet":
                shape = {**shape, "batch": UNET_BATCH}
            inputs = part_inputs(pipe, name, seed=seed, **shape)
            label = "x".join(str(d) for d in next(iter(inputs.values())).shape)
            with torch.no_grad():
                expected = module(*(torch.from_numpy(a) for a in inputs.values()))
            expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
            try:
                got = session.run(output_names, inputs)
            except Exception as error:  # ORT raises its own exception types, one per failure kind
                detail = f"{type(error).__name__}: {error}"
                checks.append(PartCheck(name, label, float("inf"), tolerance, False, detail))
                continue
            err, detail = _max_abs_err(got, expected, output_names)
            checks.append(PartCheck(name, label, err, tolerance, bool(err <= tolerance), detail))
    finally:
        del session  # an ORT session keeps its memory arena until it is gone: free it before the next part
        gc.collect()
    return checks


def check_all(
    pipe,
    paths: dict[str, Path],
    *,
    progress: bool = True,
    shapes: Sequence[dict[str, int]] = CHECK_SHAPES,
    tolerances: dict[str, float] | None = None,
) -> list[PartCheck]:
    """Check every part in `paths` at `shapes`, print a table, raise `ExportCheckError` if any is off.

    Each part's tolerance is its spec's `onnx_tolerance` (calibrated on the tiny model), unless `tolerances`
    names another (deeper full-size parts may need one)."""
    tolerances = {name: spec.onnx_tolerance for name, spec in SIZE_FREE_SPECS.items()} | (tolerances or {})
    names = [n for n in PART_NAMES if n in paths] + [n for n in paths if n not in PART_NAMES]
    checks: list[PartCheck] = []
    for name in tqdm(names, desc="ONNX check", unit="part", disable=not progress):
        checks += check_part(pipe, name, paths[name], shapes, tolerance=tolerances.get(name))
    print(format_checks(checks))
    failures = [c for c in checks if not c.ok]
    if failures:
        raise ExportCheckError(failures)
    return checks


def format_checks(checks: Iterable[PartCheck]) -> str:
    """A small fixed-width table: part, first input's shape, max abs error, tolerance, verdict."""
    lines = [f"{'part':<14}{'input shape':<18}{'max abs err':>12}{'tolerance':>11}  ok"]
    for c in checks:
        verdict = "ok" if c.ok else "FAIL" + (f" ({c.detail})" if c.detail else "")
        lines.append(f"{c.name:<14}{c.shape:<18}{c.max_abs_err:>12.2e}{c.tolerance:>11.1e}  {verdict}")
    return "\n".join(lines)


def _session(onnx_path: Path, name: str) -> ort.InferenceSession:
    """A CPU session; the UNet's without the memory arena, which holds every attention-score buffer it saw.

    Without the arena the UNet uses about half the memory at 1.5-2x the time (docs/export.md); a one-off check
    on a 24 GB machine can afford the time, not the memory.
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = name != "unet"
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _max_abs_err(got: list[np.ndarray], expected: list[np.ndarray], names: list[str]) -> tuple[float, str]:
    """Largest abs difference over all outputs; infinite, with the reason, on a shape mismatch."""
    worst = 0.0
    for output, a, b in zip(names, got, expected, strict=True):
        if a.shape != b.shape:
            return float("inf"), f"{output}: shape {a.shape}, expected {b.shape}"
        err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
        if not np.isfinite(err):  # NaN would compare as "within tolerance" in max(); call it what it is
            return float("inf"), f"{output}: non-finite values"
        worst = max(worst, err)
    return worst, ""
