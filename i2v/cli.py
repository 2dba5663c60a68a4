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

from i2v.arguments import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, CommandParser, DefaultsFormatter
from i2v.benchmarks.command import add_bench_command
from i2v.client.command import (
    OutputError,
    add_client_commands,
    add_generation_args,
    add_lora_list_command,
    fail,
    fail_request,
    generate_with_progress,
    prepared_request,
)
from i2v.examples import LIGHTHOUSE_PROMPT, lighthouse_image
from i2v.export.command import add_export_command
from i2v.gateway.command import add_gateway_command
from i2v.model.info import DEFAULT_REPOSITORY, TINY_MODEL
from i2v.model.repository_layout import is_exported
from i2v.params import (
    METADATA_FRAMES,
    METADATA_HEIGHT,
    METADATA_MODEL,
    METADATA_TIMINGS,
    METADATA_WIDTH,
    TOTAL_STAGE,
)
from i2v.serving.command import add_serve_command
from i2v.serving.lora_command import add_lora_command
from i2v.ui.command import add_ui_command
from i2v.video import metadata_path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ModuleNotFoundError as exc:  # a command of an extra this install lacks (a client-only one runs export)
        if not exc.name or exc.name.split(".")[0] == "i2v":
            raise
        print(
            f"error: this command needs the package {exc.name.split('.')[0]!r}, which this install lacks: "
            "pip install 'i2v-serving[server]' for export and serving, '[ui]' for the page, '[bench]' for benchmarks",
            file=sys.stderr,
        )
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="i2v", description="I2VGen-XL image-to-video on Triton.")
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
    """The README's main job: tiny model → ONNX → Triton → gRPC → MP4, on this machine. A failure is one line
    with `i2v generate`'s exit code for it (1 for the export's and the server's), not a traceback."""
    from i2v.client.errors import I2VError
    from i2v.export.pipeline import export_model_repository
    from i2v.export.validate import ExportCheckError
    from i2v.serving.triton_server import EmbeddedTritonServer, TritonServerError

    args.url, args.api_key, args.timeout = None, None, None  # the demo's own server, started below
    try:
        with lighthouse_image() as bundled:
            args.image = args.image or bundled
            request = prepared_request(args)  # before the export and the server's start
            if not is_exported(args.model_repository):
                print(f"exporting the tiny model to {args.model_repository} ...")
                export_model_repository(TINY_MODEL, args.model_repository, check=True)
            print("starting Triton ...")
            with EmbeddedTritonServer(args.model_repository) as server:
                endpoints = server.endpoints
                args.url = endpoints.grpc_url
                print(f"Triton ready: gRPC {args.url}, HTTP {endpoints.http_url}, metrics {endpoints.metrics_url}")
                result = generate_with_progress(request, args, args.url)
    except I2VError as exc:
        return fail_request(exc, args)
    except KeyboardInterrupt:
        return fail("cancelled (Ctrl-C)", EXIT_CANCELLED)
    except OutputError as exc:
        return fail(str(exc), EXIT_FAILED)
    except (TritonServerError, ExportCheckError, ValueError, OSError) as exc:  # each names what went wrong
        return fail(str(exc), EXIT_FAILED)
    meta = result.metadata
    print(
        f"wrote {args.output}: {meta[METADATA_FRAMES]} frames {meta[METADATA_WIDTH]}x{meta[METADATA_HEIGHT]}, "
        f"seed {result.seed}, {meta[METADATA_TIMINGS][TOTAL_STAGE]:.2f} s on the server; "
        f"metadata in {metadata_path(args.output)}"
    )
    if meta[METADATA_MODEL] == TINY_MODEL:
        print("note: the tiny model has random weights, so its video is noise; export real weights for real videos")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
