"""The `i2v` command: export, serve, generate, demo.

Heavy imports (torch, diffusers, tritonserver) happen inside the subcommands, so `i2v generate` works on a
client-only install and `i2v --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from i2v.examples import LIGHTHOUSE_IMAGE
from i2v.params import DECODE_CHUNK_RANGE, FPS_RANGE, GUIDANCE_RANGE, NUM_FRAMES_RANGE, STEPS_RANGE

DEFAULT_REPOSITORY = Path("model_repository")
DEFAULT_URL = "localhost:8001"
EXAMPLE_PROMPT = "A lighthouse on a cliff, waves rolling in, clouds drifting by"

# Exit codes that mean something to scripts.
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_OVERLOADED, EXIT_CANCELLED = 0, 1, 2, 3, 4, 5


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args)


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show every default except None (those say in their help what happens when omitted)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.dest == "api_key":  # never print a key
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2v", description="I2VGen-XL image-to-video on Triton.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    fmt = _DefaultsFormatter

    export = commands.add_parser(
        "export", help="export a model to ONNX and write a Triton model repository", formatter_class=fmt
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
        default=4,
        help="requests that may wait while one generates; more are refused at once",
    )
    export.add_argument(
        "--runtime",
        choices=["onnxruntime", "torch", "tensorrt"],
        default="onnxruntime",
        help="what serves the parts: ONNX Runtime (CPU), the PyTorch modules (fp16 on a GPU, "
        "fp32 on a CPU) or fp16 TensorRT engines (GPU + TensorRT; see docs/tensorrt.md)",
    )
    export.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="where the torch runtime runs (auto: the GPU if this machine has CUDA)",
    )
    export.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        help="TensorRT timing cache (default: ~/.cache/i2v/tensorrt-<version>.timing-cache)",
    )
    export.add_argument(
        "--engine-check",
        choices=["smallest", "all", "none"],
        default="smallest",
        help="compare TensorRT engines with ONNX Runtime at the smallest profile, all, or none",
    )
    export.set_defaults(run=run_export)

    serve = commands.add_parser(
        "serve", help="run the embedded Triton server on a model repository", formatter_class=fmt
    )
    serve.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="written by `i2v export`")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (the client's)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (health, metadata)")
    serve.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    serve.add_argument("--log-file", type=Path, default=None, help="server log; a temporary file when omitted")
    serve.add_argument(
        "--api-key",
        default=os.environ.get("I2V_API_KEY"),
        help="require this key for inference and model control (env I2V_API_KEY); health and metrics stay open",
    )
    serve.set_defaults(run=run_serve)

    generate = commands.add_parser(
        "generate",
        formatter_class=fmt,
        help="generate a video (or a batch: a folder of images or a JSONL of requests) through gRPC",
    )
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="PNG, JPEG or WebP picture")
    source.add_argument(
        "--batch", type=Path, help='a folder of images (all with --prompt), or a JSONL file of {"image", "prompt", ...}'
    )
    generate.add_argument("--prompt", help="what should happen in the video (JSONL lines may set their own)")
    generate.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("outputs/video.mp4"),
        help="MP4 to write (single image); its metadata goes beside it as .json",
    )
    generate.add_argument(
        "--output-dir", type=Path, default=Path("outputs/batch"), help="folder for a batch's videos and manifest.json"
    )
    add_connection_args(generate)
    add_generation_args(generate)
    generate.set_defaults(run=run_generate)

    models = commands.add_parser("models", help="list, load or unload models on a running server", formatter_class=fmt)
    models.add_argument("action", choices=["list", "load", "unload"])
    models.add_argument("names", nargs="*", help="models to load or unload (load also picks up new versions)")
    add_connection_args(models)
    models.set_defaults(run=run_models)

    demo = commands.add_parser(
        "demo",
        formatter_class=fmt,
        help="export the tiny model if needed, start Triton, generate a video from the example image, stop",
    )
    demo.add_argument(
        "--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="exported here first if it holds no model"
    )
    demo.add_argument("--image", type=Path, default=LIGHTHOUSE_IMAGE, help="input picture")
    demo.add_argument("--prompt", default=EXAMPLE_PROMPT, help="what should happen in the video")
    demo.add_argument("-o", "--output", type=Path, default=Path("outputs/demo.mp4"), help="MP4 to write")
    add_generation_args(demo)
    demo.set_defaults(run=run_demo)

    # Subcommands that live with their code; their modules import nothing heavy at import time.
    from i2v.benchmarks.command import add_bench_command
    from i2v.ui.command import add_ui_command

    add_ui_command(commands, fmt)
    add_bench_command(commands, fmt)
    return parser


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="Triton gRPC address")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("I2V_API_KEY"),
        help="key for a server that restricts inference (env I2V_API_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the request is cancelled")


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    """Generation parameters; omitted ones take the served model's defaults (reported in the metadata JSON)."""
    group = parser.add_argument_group("generation (default: the served model's own)")
    group.add_argument("--negative-prompt", default=None, help="what the video should avoid")
    group.add_argument("--height", type=int, default=None, help="pixels, a multiple of the model's size step")
    group.add_argument("--width", type=int, default=None, help="pixels, a multiple of the model's size step")
    group.add_argument("--num-frames", type=int, default=None, help="{} to {}".format(*NUM_FRAMES_RANGE))
    group.add_argument("--fps", type=int, default=None, help="{} to {}, also a model condition".format(*FPS_RANGE))
    group.add_argument(
        "--steps",
        dest="num_inference_steps",
        type=int,
        default=None,
        help="denoising steps, {} to {}".format(*STEPS_RANGE),
    )
    group.add_argument(
        "--guidance",
        dest="guidance_scale",
        type=float,
        default=None,
        help="classifier-free guidance scale, {:g} to {:g}".format(*GUIDANCE_RANGE),
    )
    group.add_argument("--seed", type=int, default=None, help="random when omitted; the one used is reported")
    group.add_argument(
        "--decode-chunk-size",
        type=int,
        default=None,
        help="frames per VAE decode call, {} to {}".format(*DECODE_CHUNK_RANGE),
    )


GENERATION_ARGS = (
    "negative_prompt",
    "height",
    "width",
    "num_frames",
    "fps",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "decode_chunk_size",
)


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
        )
    except (TensorRTUnavailableError, UnsupportedOperatorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"model repository ({args.runtime}) written to {args.output}")
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    from i2v.serving.triton_server import EmbeddedTritonServer, serve_forever

    if not (args.model_repository / "i2vgen_xl" / "config.pbtxt").exists():
        print(f"error: no model repository at {args.model_repository}: run `i2v export` first", file=sys.stderr)
        return EXIT_INVALID
    server = EmbeddedTritonServer(
        args.model_repository,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_file=args.log_file,
        api_key=args.api_key,
    )
    return serve_forever(server)


def run_generate(args: argparse.Namespace) -> int:
    from i2v.client import errors

    try:
        if args.batch is not None:
            return run_batch(args)
        if not args.prompt:
            raise ValueError("--prompt is required with --image")
        result = generate_with_progress(args, args.url)
    except errors.InvalidInputError as exc:
        return _fail(f"invalid input: {exc}", EXIT_INVALID)
    except errors.ServerUnavailableError as exc:
        return _fail(f"server unavailable: {exc}", EXIT_UNAVAILABLE)
    except errors.OverloadedError as exc:
        return _fail(f"server overloaded: {exc}", EXIT_OVERLOADED)
    except errors.CancelledError as exc:
        return _fail(f"cancelled: {exc}", EXIT_CANCELLED)
    except errors.I2VError as exc:
        return _fail(f"generation failed: {exc}", EXIT_FAILED)
    except ValueError as exc:  # client-side parameter checks
        return _fail(f"invalid input: {exc}", EXIT_INVALID)
    print(f"wrote {args.output} (seed {result.seed}, {result.timings['total']:.2f} s on the server)")
    return EXIT_OK


def run_batch(args: argparse.Namespace) -> int:
    """One video per item, a progress bar over the items, a manifest; exit 1 if any item failed."""
    from tqdm import tqdm

    from i2v.client import batch
    from i2v.client.grpc_client import I2VClient

    params = {name: getattr(args, name) for name in GENERATION_ARGS if getattr(args, name) is not None}
    if args.batch.is_dir():
        if not args.prompt:
            raise ValueError("--prompt is required with a folder of images")
        items = batch.items_from_folder(args.batch, args.prompt, params)
    elif args.batch.is_file():
        items = batch.items_from_jsonl(args.batch, {"prompt": args.prompt, **params} if args.prompt else params)
    else:
        raise ValueError(f"batch input not found: {args.batch}")
    failed = 0
    with I2VClient(args.url, api_key=args.api_key, timeout_s=args.timeout) as client:
        client.wait_until_ready()
        with tqdm(total=len(items), desc="videos", unit="video") as bar:
            for record in batch.run_batch(client, items, args.output_dir):
                if record["status"] != "ok":
                    failed += 1
                    tqdm.write(f"failed: {record['name']}: {record['error']}", file=sys.stderr)
                bar.update()
    print(
        f"{len(items) - failed} of {len(items)} videos written to {args.output_dir}; "
        f"manifest: {args.output_dir / batch.MANIFEST}"
    )
    return EXIT_FAILED if failed else EXIT_OK


def generate_with_progress(args: argparse.Namespace, url: str):
    """Send one request, draw a progress bar from the streamed steps, save MP4 + metadata JSON."""
    from tqdm import tqdm

    from i2v.client.grpc_client import I2VClient
    from i2v.client.types import GenerationRequest

    if not args.image.is_file():
        raise ValueError(f"image file not found: {args.image}")
    params = {name: getattr(args, name) for name in GENERATION_ARGS if getattr(args, name) is not None}
    request = GenerationRequest.from_file(args.image, args.prompt, **params)
    with I2VClient(url, api_key=getattr(args, "api_key", None), timeout_s=getattr(args, "timeout", None)) as client:
        client.wait_until_ready()
        with tqdm(total=None, desc="denoising", unit="step") as bar:

            def on_progress(step: int, total: int) -> None:
                bar.total = total
                bar.update(step - bar.n)

            result = client.generate(request, on_progress=on_progress)
    result.save(args.output)
    return result


def run_models(args: argparse.Namespace) -> int:
    from i2v.client import errors
    from i2v.client.model_control import ModelControl

    if args.action != "list" and not args.names:
        return _fail(f"name the models to {args.action}", EXIT_INVALID)
    try:
        with ModelControl(args.url, api_key=args.api_key) as control:
            for name in args.names:
                (control.load if args.action == "load" else control.unload)(name)
                print(f"{args.action}ed {name}")
            if args.action == "list":
                for model in control.list():
                    reason = f"  ({model.reason})" if model.reason else ""
                    print(f"{model.name:<16} {model.version or '-':>3}  {model.state}{reason}")
    except errors.ServerUnavailableError as exc:
        return _fail(f"server unavailable: {exc}", EXIT_UNAVAILABLE)
    except errors.I2VError as exc:
        return _fail(str(exc), EXIT_FAILED)
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    """The README's main job: tiny model → ONNX → Triton → gRPC → MP4, on this machine."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    if not (args.model_repository / "i2vgen_xl" / "config.pbtxt").exists():
        from i2v.export.pipeline import export_model_repository

        print(f"exporting the tiny model to {args.model_repository} ...")
        export_model_repository("tiny", args.model_repository, check=True)
    print("starting Triton ...")
    with EmbeddedTritonServer(args.model_repository) as server:
        endpoints = server.endpoints
        print(f"Triton ready: gRPC {endpoints.grpc_url}, HTTP {endpoints.http_url}, metrics {endpoints.metrics_url}")
        args.api_key, args.timeout = None, None
        result = generate_with_progress(args, endpoints.grpc_url)
    meta = result.metadata
    print(
        f"wrote {args.output}: {meta['frames']} frames {meta['width']}x{meta['height']}, seed {result.seed}, "
        f"{meta['timings']['total']:.2f} s on the server; metadata in {args.output.with_suffix('.json')}"
    )
    if meta["model"] == "tiny":
        print("note: the tiny model has random weights, so its video is noise; export real weights for real videos")
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
