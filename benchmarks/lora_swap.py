"""`i2v bench --suite lora`: what switching LoRA adapters costs in the UNet part, per runtime, and whether
memory stays flat over many switches.

It runs the UNet part's own LoRA code (`i2v.serving.lora_runtime`) in-process, on the graph and weights the
export writes, with two random rank-8 adapters on the attention layers: the first use of an adapter (ONNX
Runtime: merge + a new session; torch: PEFT injection), a switch between two already used, back to the base
model, each as the extra time of the UNet call that follows it over a steady call with what it changed to (an
adapter kept, or the base model); then the process's
resident memory after 50 switches over three adapters (more than the session cache holds) against after the
first few.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from i2v.benchmarks.measure import rss_mb
from i2v.export.lora_initializers import write_lora_files
from i2v.export.onnx_export import export_part
from i2v.export.sample_inputs import part_inputs, sample_shape
from i2v.model.lora import lora_targets
from i2v.model.lora_registry import file_version
from i2v.model.modules import part_module, run_part_module
from i2v.model.repository_layout import GRAPH_FILE
from i2v.serving.lora_runtime import AdapterFiles, LoraChoice, OnnxLoraSessions, PeftAdapters
from i2v.serving.onnxruntime_session import open_session

SWITCHES = 50


def random_lora(unet, path: Path, seed: int, rank: int = 8) -> Path:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module, shape in lora_targets(unet).items():
        if module.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") and len(shape) == 2:
            tensors[f"unet.{module}.lora_A.weight"] = torch.randn(rank, shape[1], generator=generator) * 0.1
            tensors[f"unet.{module}.lora_B.weight"] = torch.randn(shape[0], rank, generator=generator) * 0.1
    save_file(tensors, str(path))
    return path


def measure_lora_swaps(pipe) -> dict[str, dict[str, float]]:
    """{runtime: {step_s, adapter_step_s, first_use_s, switch_s, to_base_s, rss_growth_mb}} on the CPU."""
    height, width = sample_shape(pipe)
    feeds = part_inputs(pipe, "unet", batch=2, height=height, width=width, frames=8)
    results = {}
    with tempfile.TemporaryDirectory(prefix="i2v-lora-bench-") as work:
        work = Path(work)
        export_part(pipe, "unet", work / GRAPH_FILE)
        write_lora_files(work / GRAPH_FILE, pipe.unet, work)
        folder = work / "loras"
        folder.mkdir()
        choices = [
            LoraChoice(n, file_version(random_lora(pipe.unet, folder / f"{n}.safetensors", i)), 1.0)
            for i, n in enumerate(("a", "b", "c"))
        ]
        base = open_session(work / GRAPH_FILE)
        sessions = OnnxLoraSessions(work, AdapterFiles(folder), open_session, capacity=2)

        def onnx_step(choice):
            session = base if choice is None else sessions.session(choice)
            session.run(None, feeds)

        results["onnxruntime"] = _swap_costs(onnx_step, choices)

        module = part_module(pipe, "unet")
        adapters = PeftAdapters(module.unet, AdapterFiles(folder), capacity=2)
        inputs = [torch.from_numpy(a) for a in feeds.values()]

        def torch_step(choice):
            adapters.select(choice)
            run_part_module(module, inputs, torch.float32)

        results["torch"] = _swap_costs(torch_step, choices)
    return results


def _timed(step, choice) -> float:
    start = time.perf_counter()
    step(choice)
    return time.perf_counter() - start


def _swap_costs(step, choices) -> dict[str, float]:
    """Each cost against the steady call it adds to: a change to an adapter against a call that keeps that
    adapter (PEFT's unmerged layers make every such call slower than the base model's, which is not a switch's
    cost), back to none against the base model's call; medians, as one call varies by milliseconds here."""
    a, b, c = choices
    for _ in range(3):  # warm-up: allocators, caches, lazy initialisation
        step(None)
    steady = statistics.median(_timed(step, None) for _ in range(5))
    first_a = _timed(step, a)
    _timed(step, b)  # b's first use
    with_adapter = statistics.median(_timed(step, a) for _ in range(5))  # a, kept: no change
    switch = statistics.median(_timed(step, x) for x in (b, a, b, a, b, a)) - with_adapter
    back = []
    for _ in range(3):
        step(a)
        back.append(_timed(step, None))
    rss_start = rss_mb({os.getpid()})
    for i in range(SWITCHES):
        step((a, b, c, None)[i % 4])
    return {  # + 0.0: a cost within noise of nothing reads 0.0, not -0.0
        "step_s": round(steady, 4),
        "adapter_step_s": round(with_adapter, 4),
        "first_use_s": round(first_a - with_adapter, 4) + 0.0,
        "switch_s": round(switch, 4) + 0.0,
        "to_base_s": round(statistics.median(back) - steady, 4) + 0.0,
        "rss_growth_mb_after_50_switches": round(rss_mb({os.getpid()}) - rss_start, 1),
    }


def report(results: dict[str, dict[str, float]]) -> str:
    rows = [
        "| runtime | UNet step s | with an adapter s | first use of an adapter s | switch between two s "
        "| back to none s | RSS growth after 50 switches MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for runtime, r in results.items():
        rows.append(
            f"| {runtime} | {r['step_s']} | {r['adapter_step_s']} | {r['first_use_s']} | {r['switch_s']} | "
            f"{r['to_base_s']} | {r['rss_growth_mb_after_50_switches']} |"
        )
    return "\n".join(rows)


def markdown(result: dict) -> str:
    """results.md: where and on what it was measured, then the table."""
    machine, settings = result["machine"], result["settings"]
    head = (
        f"LoRA swaps in the UNet part, measured {machine['date']} on {machine['cpu']} ({machine['cpu_cores']} cores), "
        f"model `{settings['model']}`, on the CPU; memory after {settings['switches']} switches over three adapters."
    )
    return head + "\n\n" + report(result["runtimes"]) + "\n"


def write_results(result: dict, folder: Path) -> list[Path]:
    """results.json ({machine, settings, runtimes}) and results.md in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "results.md").write_text(markdown(result))
    return [folder / "results.json", folder / "results.md"]
