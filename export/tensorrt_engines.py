"""ONNX → fp16 TensorRT engines through polygraphy's backend API, and a check of each engine against PyTorch.

The only module that touches TensorRT, and only inside its functions: everything else in the project (the
profiles, the configs, the operator check) works without it. What it does, per part:

1. parse the ONNX graph (`NetworkFromOnnxPath`: TensorRT's parser reads external weights beside the graph);
2. build a serialized fp16 engine with one optimization profile per supported resolution
   (`CreateConfig(fp16=True, tf32=True, profiles=..., load_timing_cache=...)`, `EngineBytesFromNetwork(...,
   save_timing_cache=...)`): layers TensorRT keeps in fp32 may use TF32 (polygraphy turns it off unless
   asked); the timing cache keeps tactic timings between builds, so a rebuild (another part with the same
   layers, a new profile, new weights) skips most of the autotuning;
3. write it as `<repository>/<part>/1/model.plan`, the default file name of Triton's `tensorrt_plan` platform;
4. read back what each profile's execution context needs on the GPU (`engine_memory`) for the memory plan;
5. run the engine and the part's PyTorch module in fp32 on the same inputs (polygraphy's `Comparator`) at
   the opt shapes of the profiles the caller picks (`--engine-check`): no NaN or infinity, and every element
   within the part's fp16 tolerance.

An engine only runs with the TensorRT version (and GPU architecture) it was built with: build it with the
TensorRT that the serving Triton container ships (docs/tensorrt.md).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from i2v.export.memory_plan import EngineMemory
from i2v.export.profiles import OptimizationProfile
from i2v.model.parts import SIZE_FREE_SPECS

INSTALL_HINT = (
    "TensorRT is not installed in this environment. Build engines on a GPU host with the project's image "
    "(`docker compose --profile export run --rm export`: the serving Triton with its TensorRT), or in a "
    "Python 3.11+ environment with `pip install tensorrt-cu12==<the serving Triton's TensorRT> "
    "--extra-index-url https://pypi.nvidia.com` (the PyPI package alone is a stub that fetches from NVIDIA's "
    "index). Without TensorRT, "
    "use `--runtime torch` (PyTorch on the GPU) or `--runtime onnxruntime`. See docs/tensorrt.md."
)


class TensorRTUnavailableError(RuntimeError):
    """TensorRT (the `tensorrt` Python package with its libraries) cannot be imported here."""


class EngineCheckError(RuntimeError):
    """An engine's outputs differ from the fp32 PyTorch part's by more than the fp16 tolerances."""


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, or None when it cannot be imported (no package, no libraries)."""
    try:
        return importlib.import_module("tensorrt").__version__
    except Exception:  # ImportError, or an OSError from a stub package or missing CUDA libraries
        return None


def require_tensorrt():
    """The `tensorrt` module, or `TensorRTUnavailableError` saying how to get it."""
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:
        raise TensorRTUnavailableError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc


@dataclass
class EngineBuild:
    name: str
    path: Path
    seconds: float
    size_bytes: int
    profiles: int


def polygraphy_profiles(profiles: Sequence[OptimizationProfile]) -> list:
    """Our profiles as polygraphy `Profile`s (ordered input name → min/opt/max)."""
    from polygraphy.backend.trt import Profile

    result = []
    for profile in profiles:
        converted = Profile()
        for name, shapes in profile.inputs.items():
            converted.add(name, min=shapes.min, opt=shapes.opt, max=shapes.max)
        result.append(converted)
    return result


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    profiles: Sequence[OptimizationProfile],
    *,
    fp16: bool = True,
    timing_cache: Path | None = None,
    refittable: bool = False,
) -> Path:
    """Parse `onnx_path`, build an engine with `profiles`, write it to `plan_path`; `refittable`: its weights
    can be replaced later (`trt.Refitter`, the LoRA-ready UNet), named after the graph's initializers."""
    require_tensorrt()
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    cache = str(timing_cache) if timing_cache is not None else None
    if timing_cache is not None:
        Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
    config = CreateConfig(
        fp16=fp16, tf32=True, refittable=refittable, profiles=polygraphy_profiles(profiles), load_timing_cache=cache
    )
    build = EngineBytesFromNetwork(NetworkFromOnnxPath(str(onnx_path)), config=config, save_timing_cache=cache)
    serialized = build()
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    with open(plan_path, "wb") as plan:
        plan.write(serialized)
    return plan_path


def build_engines(
    onnx_paths: Mapping[str, Path],
    plan_paths: Mapping[str, Path],
    profiles: Mapping[str, Sequence[OptimizationProfile]],
    *,
    fp16: bool = True,
    timing_cache: Path | None = None,
    progress: bool = True,
    refittable: tuple[str, ...] = (),
) -> dict[str, EngineBuild]:
    """Build every part's engine; one shared timing cache for all of them; the parts named in `refittable`
    refittable."""
    require_tensorrt()
    builds: dict[str, EngineBuild] = {}
    bar = tqdm(list(onnx_paths), desc="TensorRT build", unit="engine", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        path = build_engine(
            onnx_paths[name],
            plan_paths[name],
            profiles[name],
            fp16=fp16,
            timing_cache=timing_cache,
            refittable=name in refittable,
        )
        builds[name] = EngineBuild(name, path, time.perf_counter() - start, path.stat().st_size, len(profiles[name]))
        if progress:
            bar.write(
                f"{name}: {len(profiles[name])} profile(s), built in {builds[name].seconds:.0f} s, "
                f"{builds[name].size_bytes / 2**20:.0f} MiB -> {path}"
            )
    return builds


def engine_memory(plan_path: Path, part: str, contexts: int) -> EngineMemory:
    """What Triton will hold for this engine: its size (weights) and each profile's activation memory, as
    TensorRT reports it (`get_device_memory_size_for_profile_v2`, TensorRT 10.1+; the engine-wide
    `device_memory_size` before)."""
    trt = require_tensorrt()
    data = Path(plan_path).read_bytes()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
    if engine is None:
        raise RuntimeError(f"{part}: TensorRT could not load the engine it just built ({plan_path})")
    count = engine.num_optimization_profiles
    per_profile = getattr(engine, "get_device_memory_size_for_profile_v2", None) or getattr(
        engine, "get_device_memory_size_for_profile", None
    )
    if per_profile is not None:
        sizes = tuple(int(per_profile(i)) for i in range(count))
    else:
        sizes = (int(getattr(engine, "device_memory_size_v2", engine.device_memory_size)),) * count
    return EngineMemory(part, len(data), sizes, contexts)


@dataclass
class EngineCheck:
    name: str
    profile: int
    passed: bool
    detail: str


def compare_engine(
    name: str,
    module,
    plan_path: Path,
    feeds: Sequence[tuple[int, dict[str, np.ndarray]]],
    *,
    tolerance: tuple[float, float] | None = None,
) -> list[EngineCheck]:
    """Run the engine (polygraphy's `TrtRunner`, at each feed's profile index) and the part's PyTorch module in
    fp32 on the GPU (the module the ONNX graph was traced from, with PyTorch's memory-efficient attention: ONNX
    Runtime's fp32 attention does not fit at the large profiles) on the same feeds, and check each pair
    (`check_engine_outputs`). The module goes back to its device and dtype afterwards (it is the pipeline's own)."""
    require_tensorrt()
    import torch
    from polygraphy.backend.trt import TrtRunner, engine_from_bytes
    from polygraphy.comparator import Comparator

    engine = engine_from_bytes(Path(plan_path).read_bytes())
    weight = next(module.parameters())
    home = (weight.device, weight.dtype)
    module.to("cuda", torch.float32)
    try:
        checks = []
        for profile, feed in feeds:
            runner = TrtRunner(engine, name=f"{name}-tensorrt", optimization_profile=profile)
            results = Comparator.run([runner], data_loader=[feed])
            checks.append(
                check_engine_outputs(name, profile, results, reference_outputs(name, module, feed), tolerance)
            )
        return checks
    finally:
        module.to(*home)


def reference_outputs(name: str, module, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The part module's fp32 outputs for one feed, by output name (what the engine is held to). Not
    polygraphy's `PytRunner`: in polygraphy 0.53 it calls a module with no inputs at activation and casts the
    inputs to polygraphy's own dtype objects, which numpy refuses."""
    import torch

    from i2v.model.modules import run_part_module

    outputs = run_part_module(module, [torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()], torch.float32)
    return {key: o.cpu().numpy() for key, o in zip(SIZE_FREE_SPECS[name].output_names, outputs, strict=True)}


def check_engine_outputs(
    name: str,
    profile: int,
    results,
    reference: Mapping[str, np.ndarray],
    tolerance: tuple[float, float] | None = None,
) -> EngineCheck:
    """Hold an engine's run (`results`: polygraphy `RunResults` of one runner) to the reference outputs with
    polygraphy's comparator: passed with only finite values and every element within `tolerance` = (atol, rtol)
    of the reference (|engine - reference| <= atol, or <= rtol * |reference|); the part's fp16 tolerance by
    default."""
    from polygraphy import comparator

    atol, rtol = tolerance or SIZE_FREE_SPECS[name].fp16_tolerance
    # SimpleCompareFunc since polygraphy 0.53; CompareFunc.simple before (deprecated there, same arguments).
    simple = getattr(comparator, "SimpleCompareFunc", None) or comparator.CompareFunc.simple
    compare = simple(atol=atol, rtol=rtol, check_error_stat="elemwise")
    results.add([dict(reference)], runner_name=f"{name}-pytorch-fp32")
    finite = bool(comparator.Comparator.validate(results, check_inf=True, check_nan=True))
    close = bool(comparator.Comparator.compare_accuracy(results, compare_func=compare))
    shapes = ", ".join(f"{key} {list(value.shape)}" for key, value in reference.items())
    detail = shapes if finite else f"NaN or infinity in the outputs; {shapes}"
    return EngineCheck(name, profile, finite and close, detail)
