"""The grid: every runner at every (resolution, frames, steps) point, warm-ups then repeats, memory sampled."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image
from tqdm import tqdm

from i2v.benchmarks.measure import PeakMemory
from i2v.benchmarks.runners import GridPoint, Runner


@dataclass
class Row:
    runner: str
    point: GridPoint
    seconds: list[float]
    stages: dict[str, float]  # median seconds per stage
    peak_rss_mb: float
    peak_gpu_mb: float | None  # NVML: GPU memory held by the runner's processes (the server's, for served)
    peak_gpu_device_mb: float | None = None  # NVML: the whole device's use
    peak_torch_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated, in-process runners on a GPU
    extra: dict = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p90_s(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def parse_grid(spec: str, steps: list[int]) -> list[GridPoint]:
    """'64x64x8,64x96x16' (height x width x frames) times every steps count."""
    points = []
    for item in spec.split(","):
        height, width, frames = (int(v) for v in item.lower().split("x"))
        points += [GridPoint(height, width, frames, s) for s in steps]
    return points


def run_grid(
    runners: list[Runner],
    points: list[GridPoint],
    image: Image.Image,
    *,
    warmup: int,
    repeats: int,
    seed: int = 0,
    on_row: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Every runner at every point: `warmup` untimed runs, then `repeats` timed ones under the memory sampler.

    `on_row` gets the rows so far after each one, so a long GPU run that is stopped still leaves its results.
    """
    rows = []
    with tqdm(total=len(runners) * len(points), desc="benchmark", unit="run") as bar:
        for point in points:
            for runner in runners:
                bar.set_postfix_str(f"{runner.name} {point.label}")
                for i in range(warmup):
                    runner.run(image, point, seed + i)
                runs = []
                with PeakMemory(runner.pids) as memory:
                    for i in range(repeats):
                        runs.append(runner.run(image, point, seed + i))
                stages = {
                    stage: statistics.median(r.timings[stage] for r in runs)
                    for stage in runs[0].timings
                    if all(stage in r.timings for r in runs)
                }
                torch_peaks = [r.torch_gpu_mb for r in runs if r.torch_gpu_mb is not None]
                rows.append(
                    Row(
                        runner.name,
                        point,
                        [r.seconds for r in runs],
                        stages,
                        memory.rss_mb,
                        memory.gpu_mb,
                        memory.gpu_device_mb,
                        max(torch_peaks) if torch_peaks else None,
                    )
                )
                if on_row is not None:
                    on_row(rows)
                bar.update()
    return rows
