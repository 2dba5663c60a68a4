"""`i2v export`: a model to a Triton model repository for one runtime."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from i2v.arguments import EXIT_FAILED, EXIT_OK, at_least, positive
from i2v.export.options import ALLOCATIONS, DEFAULT_ALLOCATION, DEFAULT_MAX_QUEUE_SIZE, DEVICES, ENGINE_CHECKS
from i2v.model.info import (
    DEFAULT_REPOSITORY,
    DEFAULT_RUNTIME,
    NO_COMPILE,
    RUNTIMES,
    TINY_MODEL,
    TORCH_COMPILE_MODES,
    SupportedShapes,
    request_frame_range,
)
from i2v.params import RESOLUTION_PRESETS, parameter


def add_export_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `export` subcommand to the `i2v` parser."""
    export = commands.add_parser(
        "export", help="export a model to ONNX and write a Triton model repository", formatter_class=formatter_class
    )
    export.add_argument(
        "--model",
        default=TINY_MODEL,
        help=f"'{TINY_MODEL}' (random weights, built locally), a diffusers folder or a hub id",
    )
    export.add_argument("--output", type=Path, default=DEFAULT_REPOSITORY, help="model repository to write")
    export.add_argument(
        "--skip-check",
        action="store_true",
        help="do not compare the ONNX graphs with PyTorch, nor the TensorRT engines with the fp32 PyTorch parts",
    )
    export.add_argument(
        "--max-queue-size",
        type=at_least(1),
        default=DEFAULT_MAX_QUEUE_SIZE,
        help="requests that may wait while one generates; more are refused at once",
    )
    export.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="what serves the parts: ONNX Runtime (CPU), the PyTorch modules (fp16 on a GPU, "
        "fp32 on a CPU) or fp16 TensorRT engines (GPU + TensorRT; see docs/tensorrt.md)",
    )
    export.add_argument(
        "--device",
        choices=DEVICES,
        default=DEVICES[0],
        help="where the torch runtime runs (auto: the GPU if this machine has CUDA)",
    )
    export.add_argument(
        "--torch-compile",
        choices=TORCH_COMPILE_MODES,
        default=NO_COMPILE,
        help="torch runtime: serve the UNet under torch.compile in this mode, compiled while the model loads "
        "(reduce-overhead adds CUDA graphs), or cuda-graphs: the eager UNet replayed from CUDA graphs, captured "
        "while the model loads (a GPU instance; a CPU one runs it eagerly)",
    )
    export.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        help="tensorrt: the timing cache (default: ~/.cache/i2v/tensorrt-<version>.timing-cache)",
    )
    export.add_argument(
        "--engine-check",
        choices=ENGINE_CHECKS,
        default=None,
        help=f"tensorrt: compare the engines with the fp32 PyTorch parts at every profile's opt shape, the smallest "
        f"profile's, or none (default: {ENGINE_CHECKS[0]})",
    )
    export.add_argument(
        "--resolutions",
        type=_resolutions,
        default=None,
        help="tensorrt: HEIGHTxWIDTH pairs the engines cover, comma-separated (default: the presets, "
        f"{', '.join(f'{h}x{w}' for h, w in RESOLUTION_PRESETS.values())}); fewer hold less GPU memory",
    )
    export.add_argument(
        "--max-frames",
        type=_max_frames,
        default=None,
        help="tensorrt: the most frames the engines cover, {}-{} (default: the parameter table's maximum)".format(
            *request_frame_range()
        ),
    )
    export.add_argument(
        "--gpu-memory-budget",
        type=positive("GiB"),
        default=None,
        help="tensorrt: GiB the loaded engines may hold; a bigger plan fails the export (default: 90%% of this GPU)",
    )
    export.add_argument(
        "--context-allocation",
        choices=ALLOCATIONS,
        default=None,
        help="tensorrt: how the serving Triton sizes execution contexts: static (24.10: every context at the "
        "largest profile; the default) or on-profile-change (25.05+: each at its own, when used)",
    )
    export.add_argument(
        "--tensorrt-lora",
        action="store_true",
        help="tensorrt: serve LoRA adapters: the UNet's engine is built refittable and run by a Python model that "
        "refits it per adapter (without it, Triton's TensorRT backend runs it and requests with a LoRA are refused)",
    )
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from i2v.export.memory_plan import GpuMemoryBudgetError
    from i2v.export.pipeline import export_model_repository
    from i2v.export.tensorrt_engines import EngineCheckError, TensorRTUnavailableError
    from i2v.export.trt_ops import UnsupportedOperatorError
    from i2v.export.validate import ExportCheckError

    refused = (TensorRTUnavailableError, UnsupportedOperatorError, ExportCheckError, GpuMemoryBudgetError)
    given = [f"--{name.replace('_', '-')}" for name in TENSORRT_OPTIONS if getattr(args, name) is not None]
    if given and args.runtime != "tensorrt":
        are = "is an option" if len(given) == 1 else "are options"
        print(f"error: {' and '.join(given)} {are} of the tensorrt runtime, not of {args.runtime}", file=sys.stderr)
        return EXIT_FAILED

    try:
        export_model_repository(
            args.model,
            args.output,
            check=not args.skip_check,
            max_queue_size=args.max_queue_size,
            runtime=args.runtime,
            device=args.device,
            timing_cache=args.timing_cache,
            engine_check=args.engine_check or ENGINE_CHECKS[0],
            torch_compile=args.torch_compile,
            supported_shapes=_supported_shapes(args),
            gpu_memory_budget_gib=args.gpu_memory_budget,
            context_allocation=args.context_allocation or DEFAULT_ALLOCATION,
            tensorrt_lora=args.tensorrt_lora,
        )
    except (*refused, EngineCheckError, ValueError) as exc:  # each names what to change; no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"model repository ({args.runtime}) written to {args.output}")
    return EXIT_OK


# What only the TensorRT export reads (None unless given); --resolutions, --max-frames and --tensorrt-lora say
# so themselves.
TENSORRT_OPTIONS = ("timing_cache", "engine_check", "gpu_memory_budget", "context_allocation")


def _resolutions(text: str) -> tuple[tuple[int, int], ...]:
    """'512x512,768x768' -> ((512, 512), (768, 768))."""
    wrong = argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH pairs such as 512x512,704x1280, got {text!r}")
    try:
        pairs = tuple(tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip())
    except ValueError:
        raise wrong from None
    if not pairs or any(len(p) != 2 for p in pairs):
        raise wrong
    for height, width in pairs:  # the parameter table's ranges; the model's size step is checked once it is loaded
        for name, value in (("height", height), ("width", width)):
            low, high = parameter(name).range
            if not low <= value <= high:
                raise argparse.ArgumentTypeError(f"{height}x{width}: {name} must be between {low} and {high}")
    return pairs


def _max_frames(text: str) -> int:
    low, high = request_frame_range()
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high} (a request's frames), got {text!r}")
    return value


def _supported_shapes(args: argparse.Namespace) -> SupportedShapes | None:
    """The TensorRT shape table the options ask for: the model's own table with what they change; None: that
    table as it is."""
    from i2v.export.profiles import supported_shapes_for

    if args.resolutions is None and args.max_frames is None:
        return None
    if args.runtime != "tensorrt":
        raise ValueError("--resolutions and --max-frames choose the TensorRT engines' shapes: use --runtime tensorrt")
    table = supported_shapes_for(args.model)
    return dataclasses.replace(
        table,
        resolutions=args.resolutions or table.resolutions,
        num_frames=(table.num_frames[0], args.max_frames or table.num_frames[1]),
    )
