"""`i2v serve`: the embedded Triton server on a model repository, in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i2v.arguments import add_api_key_argument
from i2v.model.info import DEFAULT_REPOSITORY
from i2v.params import MODEL_NAME


def add_serve_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `serve` subcommand to the `i2v` parser."""
    serve = commands.add_parser(
        "serve", help="run the embedded Triton server on a model repository", formatter_class=formatter_class
    )
    serve.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="written by `i2v export`")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (the client's)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (health, metadata)")
    serve.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    serve.add_argument("--log-file", type=Path, default=None, help="server log; a temporary file when omitted")
    add_api_key_argument(
        serve, "require this key for inference and model control; health, metadata and metrics stay open"
    )
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from i2v.serving.triton_server import EmbeddedTritonServer, serve_forever

    if not (args.model_repository / MODEL_NAME / "config.pbtxt").exists():
        print(f"error: no model repository at {args.model_repository}: run `i2v export` first", file=sys.stderr)
        return 2
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
