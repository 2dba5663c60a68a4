"""`i2v export`: a model to a Triton model repository for one runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i2v.export.options import DEFAULT_MAX_QUEUE_SIZE, DEVICES, ENGINE_CHECKS
from i2v.model.info import DEFAULT_REPOSITORY, RUNTIMES, TORCH_COMPILE_MODES


def add_export_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `export` subcommand to the `i2v` parser."""
    export = commands.add_parser(
        "export", help="export a model to ONNX and write a Triton model repository", formatter_class=formatter_class
    )
    export.add_argument(
        "--model", default="tiny", help="'tiny' (random weights, built locally), a diffusers folder or a hub id"
    )
    export.add_argument("--output", type=Path, default=DEFAULT_REPOSITORY, help="model repository to write")
    export.add_argument(
        "--skip-check",
        action="store_true",
        help="do not compare the ONNX graphs with PyTorch, nor TensorRT engines with ONNX Runtime",
    )
    export.add_argument(
        "--max-queue-size",
        type=int,
        default=DEFAULT_MAX_QUEUE_SIZE,
        help="requests that may wait while one generates; more are refused at once",
    )
    export.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=RUNTIMES[0],
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
        default=TORCH_COMPILE_MODES[0],
        help="torch runtime: serve the UNet under torch.compile in this mode, compiled while the model loads "
        "(reduce-overhead adds CUDA graphs)",
    )
    export.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        help="TensorRT timing cache (default: ~/.cache/i2v/tensorrt-<version>.timing-cache)",
    )
    export.add_argument(
        "--engine-check",
        choices=ENGINE_CHECKS,
        default=ENGINE_CHECKS[0],
        help="compare TensorRT engines with ONNX Runtime at the smallest profile, all, or none",
    )
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from i2v.export.pipeline import export_model_repository
    from i2v.export.tensorrt_engines import TensorRTUnavailableError
    from i2v.export.trt_ops import UnsupportedOperatorError

    try:
        export_model_repository(
            args.model,
            args.output,
            check=not args.skip_check,
            max_queue_size=args.max_queue_size,
            runtime=args.runtime,
            device=args.device,
            timing_cache=args.timing_cache,
            engine_check=args.engine_check,
            torch_compile=args.torch_compile,
        )
    except (TensorRTUnavailableError, UnsupportedOperatorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"model repository ({args.runtime}) written to {args.output}")
    return 0
