"""`i2v export`: load a model, export its parts, check them, write the repository for the chosen runtime.

- onnxruntime: ONNX export, checked against PyTorch in ONNX Runtime, served by the ONNX Runtime runner;
- torch: no ONNX at all; each part's weights are saved into the repository and served by the PyTorch runner
  (fp16 + SDPA on a GPU, fp32 on a CPU);
- tensorrt: ONNX export, the TensorRT operator check (fails the export naming unsupported operators), the
  ONNX Runtime check, fp16 engines with one optimization profile per supported resolution, the GPU memory
  plan (fails the export over the budget), each engine compared with the fp32 PyTorch part (polygraphy),
  `tensorrt_plan` configs. Needs TensorRT and a GPU.

The operator check is cheap (the graphs are read without their weights), so it runs for every ONNX export:
for the onnxruntime runtime it only reports.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from i2v.export.memory_plan import GIB, PLAN_FILE
from i2v.export.memory_plan import plan as plan_memory
from i2v.export.onnx_export import export_all
from i2v.export.options import DEFAULT_ALLOCATION, DEFAULT_MAX_QUEUE_SIZE, DEVICES, ENGINE_CHECKS
from i2v.export.profiles import OptimizationProfile, part_profiles, supported_shapes_for
from i2v.export.repository import model_info_for, write_model_repository
from i2v.export.sample_inputs import part_inputs
from i2v.export.sources import load_pipeline
from i2v.export.trt_ops import TENSORRT_VERSION, UnsupportedOperatorError, check_graph, format_reports
from i2v.export.validate import CHECK_SHAPES, check_all
from i2v.model.info import DEFAULT_RUNTIME, NO_COMPILE, RUNTIMES, TORCH_COMPILE_MODES, SupportedShapes
from i2v.model.modules import part_module, user_cache_dir
from i2v.model.parts import size_multiple, specs_for_pipeline, vae_scale_factor
from i2v.model.repository_layout import ENGINE_FILE, version_dir


def default_timing_cache(version: str) -> Path:
    """One TensorRT timing cache per TensorRT version, in the user's cache folder."""
    return user_cache_dir() / f"tensorrt-{version}.timing-cache"


def export_model_repository(
    source: str,
    repository: Path,
    *,
    check: bool = True,
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    runtime: str = DEFAULT_RUNTIME,
    device: str = "auto",
    supported_shapes: SupportedShapes | None = None,
    timing_cache: Path | None = None,
    engine_check: str = ENGINE_CHECKS[0],
    progress: bool = True,
    torch_compile: str = NO_COMPILE,
    gpu_memory_budget_gib: float | None = None,
    context_allocation: str = DEFAULT_ALLOCATION,
    tensorrt_lora: bool = False,
) -> Path:
    """Export `source` ('tiny', a diffusers folder or a hub id) into a Triton model repository for `runtime`.

    `device` places the torch runtime (auto: the GPU when this machine has CUDA). `supported_shapes` is the
    tensorrt runtime's shape table (default: the resolution presets, 8-32 frames). `engine_check` compares
    the engines with the fp32 PyTorch parts at every profile's opt shape, at the smallest profile's only, or
    not at all. The engines' memory plan (`i2v.export.memory_plan`) must fit `gpu_memory_budget_gib` (default:
    90% of this machine's GPU) under `context_allocation` (what the serving Triton does: "static" in 24.10).
    `torch_compile` puts the torch runtime's UNet under `torch.compile` in that mode, compiled at load.
    `tensorrt_lora` builds the UNet's engine refittable and serves it from a Python model that refits it per
    LoRA adapter (without it, a TensorRT repository's UNet takes no LoRA adapters).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if torch_compile not in TORCH_COMPILE_MODES:
        raise ValueError(f"torch_compile must be one of {', '.join(TORCH_COMPILE_MODES)}, got {torch_compile!r}")
    if tensorrt_lora and runtime != "tensorrt":
        raise ValueError(f"--tensorrt-lora is an option of the tensorrt runtime (the {runtime} runtime serves LoRAs)")
    if torch_compile != NO_COMPILE and runtime != "torch":
        raise ValueError(f"--torch-compile is an option of the torch runtime, not of {runtime}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if engine_check not in ENGINE_CHECKS:
        raise ValueError(f"engine_check must be one of {', '.join(ENGINE_CHECKS)}, got {engine_check!r}")
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise ValueError(f"--output {repository} is a file: name a folder for the model repository")
    if runtime == "tensorrt":
        from i2v.export.tensorrt_engines import require_tensorrt

        require_tensorrt()  # before minutes of export, not after
    pipe = load_pipeline(source)
    if runtime == "tensorrt":  # the table against the model (its size step, its default request), before the work
        supported_shapes = supported_shapes or supported_shapes_for(str(source))
        model_info_for(pipe, str(source), runtime="tensorrt", supported_shapes=supported_shapes)
    if runtime == "torch":
        return write_model_repository(
            pipe,
            None,
            repository,
            source=str(source),
            runtime="torch",
            instance_kind=_torch_instance_kind(device),
            max_queue_size=max_queue_size,
            torch_compile=torch_compile,
        )
    with tempfile.TemporaryDirectory(prefix="i2v-onnx-") as work:
        paths = export_all(pipe, Path(work), progress=progress)
        reports = [check_graph(path, name) for name, path in paths.items()]
        if progress:
            purpose = "" if runtime == "tensorrt" else " (a report: would a --runtime tensorrt export build?)"
            matrix = f"onnx-tensorrt's support matrix of TensorRT {TENSORRT_VERSION}"
            print(f"TensorRT operator check, by {matrix}{purpose}:\n{format_reports(reports)}")
        if runtime == "tensorrt" and not all(r.ok for r in reports):
            raise UnsupportedOperatorError(reports)
        if check:
            check_all(pipe, paths, progress=progress, shapes=check_shapes(size_multiple(pipe)))
        if runtime == "onnxruntime":
            return write_model_repository(pipe, paths, repository, source=str(source), max_queue_size=max_queue_size)
        shapes = supported_shapes
        build_tensorrt_engines(
            pipe,
            paths,
            repository,
            shapes,
            timing_cache=timing_cache,
            engine_check=engine_check if check else "none",
            progress=progress,
            gpu_memory_budget_gib=gpu_memory_budget_gib,
            context_allocation=context_allocation,
            refittable=("unet",) if tensorrt_lora else (),
        )
        return write_model_repository(
            pipe,
            paths,
            repository,
            source=str(source),
            runtime="tensorrt",
            max_queue_size=max_queue_size,
            supported_shapes=shapes,
            context_allocation=context_allocation,
            tensorrt_lora=tensorrt_lora,
        )


def check_shapes(multiple: int) -> tuple[dict[str, int], ...]:
    """validate.CHECK_SHAPES where the model allows them, else the same plan at its own size step: two
    resolutions and two frame counts, away from the sample shape, small enough for ONNX Runtime on a CPU."""
    if all(s[k] % multiple == 0 for s in CHECK_SHAPES for k in ("height", "width")):
        return CHECK_SHAPES
    return (
        {"batch": 1, "height": multiple, "width": multiple, "frames": 8},
        {"batch": 2, "height": multiple, "width": 2 * multiple, "frames": 16},
    )


def build_tensorrt_engines(
    pipe,
    onnx_paths: dict[str, Path],
    repository: Path,
    shapes: SupportedShapes,
    *,
    timing_cache: Path | None = None,
    engine_check: str = ENGINE_CHECKS[0],
    progress: bool = True,
    gpu_memory_budget_gib: float | None = None,
    context_allocation: str = DEFAULT_ALLOCATION,
    refittable: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Build `<repository>/<part>/1/model.plan` for every part from the shape table, plan the GPU memory they
    will hold (refusing a plan over the budget), and compare each engine with the fp32 PyTorch part."""
    from i2v.export.tensorrt_engines import (
        EngineCheckError,
        build_engines,
        compare_engine,
        engine_memory,
        require_tensorrt,
    )

    trt = require_tensorrt()
    specs = specs_for_pipeline(pipe)
    profiles = {name: part_profiles(specs[name], shapes, vae_scale_factor(pipe)) for name in onnx_paths}
    plans = {name: version_dir(repository, name) / ENGINE_FILE for name in onnx_paths}
    cache = timing_cache or default_timing_cache(trt.__version__)
    build_engines(onnx_paths, plans, profiles, timing_cache=cache, progress=progress, refittable=refittable)
    budget = gpu_memory_budget_gib if gpu_memory_budget_gib is not None else default_gpu_memory_budget_gib()
    # Triton's TensorRT backend opens one context per profile; a refittable part's Python runner one context, sized
    # for the profile in use (i2v.serving.tensorrt_part)
    contexts = {name: 1 if name in refittable else len(profiles[name]) for name in onnx_paths}
    memory = plan_memory(
        [engine_memory(plans[name], name, contexts=contexts[name]) for name in onnx_paths],
        allocation=context_allocation,
        budget_gib=budget,
    )
    memory.save(repository)
    if progress:
        print(f"GPU memory plan ({PLAN_FILE}):\n{memory.describe()}")
    memory.check()
    if engine_check != "none":
        failures = []
        for name in onnx_paths:
            feeds = [(i, engine_check_feed(pipe, name, p)) for i, p in _profiles_to_check(profiles[name], engine_check)]
            checks = compare_engine(name, part_module(pipe, name), plans[name], feeds)
            for c in checks:
                if progress:
                    print(f"{c.name} profile {c.profile}: {'ok' if c.passed else 'FAIL'} ({c.detail})")
            failures += [c for c in checks if not c.passed]
        if failures:
            names = ", ".join(sorted({f"{c.name} (profile {c.profile})" for c in failures}))
            raise EngineCheckError(f"TensorRT engines differ from the fp32 PyTorch parts beyond tolerance: {names}")
    return plans


def default_gpu_memory_budget_gib() -> float | None:
    """90% of this machine's first GPU (engines are built on the GPU model that serves them), or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    return 0.9 * torch.cuda.get_device_properties(0).total_memory / GIB


def engine_check_feed(pipe, name: str, profile: OptimizationProfile, seed: int = 0) -> dict:
    """Inputs at one profile's opt shape: the shape TensorRT tuned for, and the one most requests have."""
    dims = profile.dims
    batch, frames = dims["batch"][1], dims["frames"][1]
    height, width = dims["height"][0], dims["width"][0]
    if name == "vae_decoder":  # part_inputs decodes batch x frames images: one video of `batch` frames
        batch, frames = 1, batch
    return part_inputs(pipe, name, batch=batch, height=height, width=width, frames=frames, seed=seed)


def _profiles_to_check(profiles: list[OptimizationProfile], which: str) -> list[tuple[int, OptimizationProfile]]:
    indexed = list(enumerate(profiles))
    if which == "all":
        return indexed
    return [min(indexed, key=lambda ip: ip[1].dims["height"][0] * ip[1].dims["width"][0])]


def _torch_instance_kind(device: str) -> str:
    if device == "auto":
        import torch

        device = "gpu" if torch.cuda.is_available() else "cpu"
    return "KIND_GPU" if device == "gpu" else "KIND_CPU"
