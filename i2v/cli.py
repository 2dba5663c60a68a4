"""The `i2v` command: each package adds its own subcommands; `demo` ties them together.

| command | lives in |
|---|---|
| `export` | `i2v.export.command` |
| `serve`, `supervise`, `drain` | `i2v.serving.command` |
| `lora add`, `lora remove` | `i2v.serving.lora_command` (files of the model repository) |
| `lora list` | `i2v.client.command` (asks the server) |
| `generate`, `models` | `i2v.client.command` |
| `ui` | `i2v.ui.command` |
| `bench` | `i2v.benchmarks.command` |
| `gateway` | `i2v.gateway.command` |
| `demo` | here: export the tiny model, start Triton, generate through gRPC |

Heavy imports (torch, diffusers, tritonserver, gradio) happen inside the subcommands, so `i2v generate` works on
a client-only install and `i2v --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i2v.arguments import DefaultsFormatter
from i2v.benchmarks.command import add_bench_command
from i2v.client.command import (
    EXIT_OK,
    add_client_commands,
    add_generation_args,
    add_lora_list_command,
    generate_with_progress,
)
from i2v.examples import LIGHTHOUSE_PROMPT, lighthouse_image
from i2v.export.command import add_export_command
from i2v.gateway.command import add_gateway_command
from i2v.model.info import DEFAULT_REPOSITORY
from i2v.params import MODEL_NAME
from i2v.serving.command import add_serve_command
from i2v.serving.lora_command import add_lora_command
from i2v.ui.command import add_ui_command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2v", description="I2VGen-XL image-to-video on Triton.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    add_export_command(commands, DefaultsFormatter)
    add_serve_command(commands, DefaultsFormatter)
    add_lora_list_command(add_lora_command(commands, DefaultsFormatter), DefaultsFormatter)
    add_client_commands(commands, DefaultsFormatter)
    add_demo_command(commands, DefaultsFormatter)
    add_ui_command(commands, DefaultsFormatter)
    add_bench_command(commands, DefaultsFormatter)
    add_gateway_command(commands, DefaultsFormatter)
    return parser


def add_demo_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    demo = commands.add_parser(
        "demo",
        formatter_class=formatter_class,
        help="export the tiny model if needed, start Triton, generate a video from the example image, stop",
    )
    demo.add_argument(
        "--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="exported here first if it holds no model"
    )
    demo.add_argument("--image", type=Path, default=None, help="input picture (default: the bundled lighthouse)")
    demo.add_argument("-o", "--output", type=Path, default=Path("outputs/demo.mp4"), help="MP4 to write")
    add_generation_args(demo)
    demo.set_defaults(run=run_demo, prompt=LIGHTHOUSE_PROMPT)


def run_demo(args: argparse.Namespace) -> int:
    """The README's main job: tiny model → ONNX → Triton → gRPC → MP4, on this machine."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    if not (args.model_repository / MODEL_NAME / "config.pbtxt").exists():
        from i2v.export.pipeline import export_model_repository

        print(f"exporting the tiny model to {args.model_repository} ...")
        export_model_repository("tiny", args.model_repository, check=True)
    print("starting Triton ...")
    with EmbeddedTritonServer(args.model_repository) as server, lighthouse_image() as bundled:
        endpoints = server.endpoints
        print(f"Triton ready: gRPC {endpoints.grpc_url}, HTTP {endpoints.http_url}, metrics {endpoints.metrics_url}")
        args.image = args.image or bundled
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


if __name__ == "__main__":
    sys.exit(main())
