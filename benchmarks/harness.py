"""The grid: every runner at every (resolution, frames, steps) point, warm-ups then repeats, memory sampled."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image
from tqdm import tqdm

from i2v.benchmarks.measure import PeakMemory
from i2v.benchmarks.runners import GridPoint, Run, Runner


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
    """Every runner at every point: `warmup` untimed runs each, then `repeats` rounds of one timed run per runner
    under the memory sampler. Interleaved rounds expose the runners to the same drift of a shared machine (the
    served and in-process figures are compared with each other); the warm-ups come first (compilation).

    `on_row` gets the rows so far after every round, so a long GPU run that is stopped still leaves its results.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be at least 0 and repeats at least 1, got {warmup} and {repeats}")
    rows: list[Row] = []
    with tqdm(total=len(points) * len(runners) * (warmup + repeats), desc="benchmark", unit="run") as bar:
        for point in points:
            for runner in runners:
                bar.set_postfix_str(f"warm-up {runner.name} {point.label}")
                for i in range(warmup):
                    runner.run(image, point, seed + i)
                    bar.update()
            runs: dict[str, list[tuple[Run, PeakMemory]]] = {runner.name: [] for runner in runners}
            for i in range(repeats):
                for runner in runners:
                    bar.set_postfix_str(f"{runner.name} {point.label}")
                    with PeakMemory(runner.pids) as memory:
                        run = runner.run(image, point, seed + i)
                    runs[runner.name].append((run, memory))
                    bar.update()
                if on_row is not None:
                    on_row(rows + [_row(name, point, measured) for name, measured in runs.items()])
            rows += [_row(name, point, measured) for name, measured in runs.items()]
    return rows


def _row(runner: str, point: GridPoint, measured: list[tuple[Run, PeakMemory]]) -> Row:
    """One runner's timed runs at one point: median stages, peak memory over all of them."""
    runs = [run for run, _ in measured]
    stages = {
        stage: statistics.median(r.timings[stage] for r in runs)
        for stage in runs[0].timings
        if all(stage in r.timings for r in runs)
    }
    torch_peaks = [r.torch_gpu_mb for r in runs if r.torch_gpu_mb is not None]
    return Row(
        runner,
        point,
        [r.seconds for r in runs],
        stages,
        max(m.rss_mb for _, m in measured),
        _max(m.gpu_mb for _, m in measured),
        _max(m.gpu_device_mb for _, m in measured),
        max(torch_peaks) if torch_peaks else None,
    )


def _max(values) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
