"""Results as JSON (with the machine), a markdown table with ratios against the baselines, and PNG plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from i2v.benchmarks.harness import Row
from i2v.benchmarks.runners import UNET_MODEL_STAGE
from i2v.params import UNET_PER_STEP_STAGE


def to_json(rows: list[Row], machine: dict, settings: dict, extra: dict) -> dict:
    return {
        "machine": machine,
        "settings": settings,
        **extra,
        "rows": [
            {
                "runner": r.runner,
                **asdict(r.point),
                "median_s": r.median_s,
                "p90_s": r.p90_s,
                "seconds": r.seconds,
                "stages": r.stages,
                "peak_rss_mb": round(r.peak_rss_mb, 1),
                "peak_gpu_mb": _round(r.peak_gpu_mb),
                "peak_gpu_device_mb": _round(r.peak_gpu_device_mb),
                "peak_torch_gpu_mb": _round(r.peak_torch_gpu_mb),
                **_achieved(r, extra),
                **r.extra,
            }
            for r in rows
        ],
    }


def read_results(folder: Path) -> dict | None:
    path = Path(folder) / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def merge_results(previous: dict, current: dict) -> dict:
    """`current` with the rows of `previous` it did not measure again (other points, other runners) kept, in
    grid order; the machine and settings are the current run's, the grid the union of both."""

    def key(row: dict) -> tuple:
        return (row["height"], row["width"], row["frames"], row["steps"], row["runner"])

    measured = {key(r) for r in current["rows"]}
    rows = [r for r in previous["rows"] if key(r) not in measured] + current["rows"]
    order = {p: i for i, p in enumerate(dict.fromkeys(k[:4] for k in map(key, rows)))}
    rows.sort(key=lambda r: order[key(r)[:4]])
    grid = list(dict.fromkeys([*previous["settings"]["grid"].split(","), *current["settings"]["grid"].split(",")]))
    flops = {**previous.get("unet_tflops_per_step", {}), **current.get("unet_tflops_per_step", {})}
    return {
        **current,
        "settings": {**current["settings"], "grid": ",".join(grid)},
        "unet_tflops_per_step": flops,
        "rows": rows,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _achieved(row: Row, extra: dict) -> dict:
    """UNet TFLOP/s achieved per step (from the measured s/step) and its fraction of the GPU's data-sheet peak."""
    flops = extra.get("unet_tflops_per_step", {}).get(row.point.shape_label)
    per_step = row.stages.get(UNET_PER_STEP_STAGE)
    if flops is None or not per_step:
        return {}
    achieved = flops / per_step
    peak = extra.get("gpu_peak_tflops")
    return {"unet_tflops_per_s": round(achieved, 4), "unet_fraction_of_peak": peak and round(achieved / peak, 4)}


def baseline_of(runner: str) -> str:
    """The in-process loop a served runner is compared with: the same runtime without Triton."""
    return runner.removeprefix("served-") if runner.startswith("served-") else ""


def markdown_table(result: dict) -> str:
    """One line per grid point and runner; ratios against the in-process loop of the same runtime (the serving
    overhead) and against diffusers (the baseline), UNet throughput, peak memory."""
    rows = result["rows"]
    by_point: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        by_point.setdefault((row["height"], row["width"], row["frames"], row["steps"]), {})[row["runner"]] = row
    lines = [
        "| size | frames | steps | runner | median s | p90 s | UNet s/step | UNet TFLOP/s (of peak) | × in-process "
        "| step × in-process | × diffusers | peak RSS MB | peak GPU MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (height, width, frames, steps), runners in by_point.items():
        for name, row in runners.items():
            in_process = runners.get(baseline_of(name))
            lines.append(
                f"| {height}x{width} | {frames} | {steps} | {name} | {row['median_s']:.3f} | {row['p90_s']:.3f} | "
                f"{_fmt(row['stages'].get(UNET_PER_STEP_STAGE))} | {_throughput(row)} | "
                f"{_ratio(row, in_process)} | {_step_ratio(row, in_process)} | "
                f"{_ratio(row, runners.get('diffusers'))} | {row['peak_rss_mb']:.0f} | {_fmt(_gpu_mb(row), 0)} |"
            )
    machine = result["machine"]
    head = (
        f"Measured {machine['date']} on {machine.get('gpu') or machine['cpu']} ({machine['cpu_cores']} cores), "
        f"model `{result['settings']['model']}`; {result['settings']['repeats']} repeats after "
        f"{result['settings']['warmup']} warm-up. Ratios are median time over the baseline's (lower is faster)."
    )
    if result.get("throughput"):
        t = result["throughput"]
        head += (
            f" Served throughput at concurrency {t['concurrency']}: {t['requests_per_s']:.2f} requests/s "
            f"({t['point']})."
        )
    if result.get("unet_tflops_per_step"):
        head += (
            " UNet TFLOPs per guided step: "
            + ", ".join(f"{k} {v:.3g}" for k, v in result["unet_tflops_per_step"].items())
            + "."
        )
    return head + "\n\n" + "\n".join(lines) + "\n" + _step_split(rows)


def _step_split(rows: list[dict]) -> str:
    """Where a step's time goes: in the UNet's call (inside the served `unet` model, by Triton's counters, or
    `torch-synced`'s synchronised call) and between its calls."""
    split = []
    for r in rows:
        inside, step = r["stages"].get(UNET_MODEL_STAGE), r["stages"].get(UNET_PER_STEP_STAGE)
        if inside is not None and step:
            split.append(f"{r['height']}x{r['width']}x{r['frames']} {r['runner']} {inside:.4f} + {step - inside:.4f}")
    if not split:
        return ""
    return "\nUNet s/step, in the UNet's call + between its calls: " + "; ".join(split) + ".\n"


def _gpu_mb(row: dict) -> float | None:
    """The process's own GPU memory: NVML's per-process figure, else torch's allocator peak, else the device's."""
    for key in ("peak_gpu_mb", "peak_torch_gpu_mb", "peak_gpu_device_mb"):
        if row.get(key) is not None:
            return row[key]
    return None


def _throughput(row: dict) -> str:
    if row.get("unet_tflops_per_s") is None:
        return "–"
    fraction = row.get("unet_fraction_of_peak")
    return f"{row['unet_tflops_per_s']:.3g}" + (f" ({fraction:.0%})" if fraction else "")


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(row: dict, baseline: dict | None) -> str:
    return "–" if baseline is None else f"{row['median_s'] / baseline['median_s']:.2f}"


def _step_ratio(row: dict, baseline: dict | None) -> str:
    """Seconds per denoising step, served over in-process: the serving overhead where it grows with the work."""
    if baseline is None:
        return "–"
    served, local = row["stages"].get(UNET_PER_STEP_STAGE), baseline["stages"].get(UNET_PER_STEP_STAGE)
    return "–" if not served or not local else f"{served / local:.2f}"


def plot(result: dict, folder: Path) -> list[Path]:
    """latency.png and memory.png: one line per runner against the grid points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    gpu = any(_gpu_mb(r) is not None for r in result["rows"])
    memory = ("gpu_mb", "peak GPU memory (MB)") if gpu else ("peak_rss_mb", "peak RSS (MB)")
    for key, ylabel, name in (("median_s", "median latency (s)", "latency.png"), (*memory, "memory.png")):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labels = []
        for runner in dict.fromkeys(r["runner"] for r in result["rows"]):
            rows = [r for r in result["rows"] if r["runner"] == runner]
            labels = [f"{r['height']}x{r['width']}\n{r['frames']}f {r['steps']}s" for r in rows]
            values = [_gpu_mb(r) if key == "gpu_mb" else r[key] for r in rows]
            ax.plot(range(len(rows)), [float("nan") if v is None else v for v in values], marker="o", label=runner)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(f"I2VGen-XL {result['settings']['model']} — {ylabel}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(folder / name)
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_results(result: dict, folder: Path, *, plots: bool = True) -> list[Path]:
    """results.json, results.md and (with `plots`) the PNGs; rewritten after every row while a run goes on."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "results.md").write_text(markdown_table(result))
    return [folder / "results.json", folder / "results.md", *(plot(result, folder) if plots else [])]
