"""`i2v ui`: the Gradio page, pointed at a Triton server. Gradio is imported only when the page starts."""

from __future__ import annotations

import argparse

from i2v.arguments import EXIT_OK
from i2v.client.command import add_connection_args
from i2v.endpoints import LOOPBACK

PAGE_CONCURRENCY = 2  # videos generated at once for all the page's visitors
LORA_REFRESH_S = 30.0  # seconds between readings of the server's LoRA list


def add_ui_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `ui` subcommand to the `i2v` parser."""
    ui = commands.add_parser("ui", help="start the Gradio web page", formatter_class=formatter_class)
    add_connection_args(ui, timeout=False)
    ui.add_argument("--host", default=LOOPBACK, help="address to serve the page on (0.0.0.0 for all)")
    ui.add_argument("--port", type=int, default=7860, help="port of the page")
    ui.add_argument("--concurrency", type=int, default=PAGE_CONCURRENCY, help="videos generated at once, all visitors")
    ui.add_argument(
        "--lora-refresh",
        type=float,
        default=LORA_REFRESH_S,
        help="seconds between readings of the server's LoRA list; 0: only when the page opens",
    )
    ui.set_defaults(run=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    from i2v.client.command import connection_settings
    from i2v.ui.app import build_app

    app = build_app(
        args.url, concurrency=args.concurrency, lora_refresh_s=args.lora_refresh, **connection_settings(args)
    )
    print(f"UI on http://{args.host}:{args.port} (Triton at {args.url}); Ctrl-C to stop")
    app.launch(server_name=args.host, server_port=args.port, show_error=True)
    return EXIT_OK
