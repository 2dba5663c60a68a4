"""`i2v serve`: the embedded Triton server on a model repository, in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i2v.arguments import EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_SERVER_KILLED, add_api_key_argument
from i2v.endpoints import (
    GRACE_PERIOD_S,
    GRPC_PORT,
    GRPC_URL,
    HEALTH_PORT,
    HTTP_PORT,
    LOOPBACK,
    METRICS_PORT,
    METRICS_URL,
    UNANSWERED_LIMIT_S,
)
from i2v.model.info import DEFAULT_REPOSITORY
from i2v.model.repository_layout import is_exported


def add_serve_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `serve` subcommand to the `i2v` parser."""
    serve = commands.add_parser(
        "serve", help="run the embedded Triton server on a model repository", formatter_class=formatter_class
    )
    serve.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="written by `i2v export`")
    serve.add_argument("--host", default=LOOPBACK, help="IPv4 address to listen on (0.0.0.0 for all)")
    serve.add_argument("--grpc-port", type=int, default=GRPC_PORT, help="gRPC port (the client's)")
    serve.add_argument("--http-port", type=int, default=HTTP_PORT, help="HTTP port (health, metadata)")
    serve.add_argument("--metrics-port", type=int, default=METRICS_PORT, help="Prometheus metrics port")
    serve.add_argument("--log-file", type=Path, default=None, help="server log; a temporary file when omitted")
    add_api_key_argument(
        serve, "require this key for inference and model control; health, metadata and metrics stay open"
    )
    serve.add_argument(
        "--health-port",
        type=int,
        default=HEALTH_PORT,
        help="the supervisor's /ready, /live and /metrics (it restarts the server when a model's process died); "
        "0: no supervisor",
    )
    serve.add_argument(
        "--grace-period",
        type=int,
        default=GRACE_PERIOD_S,
        help="seconds requests in flight may finish after SIGTERM before the server stops anyway",
    )
    serve.set_defaults(run=run_serve)

    supervise = commands.add_parser(
        "supervise",
        help="watch a Triton server beside this process and restart it when a model's process died",
        formatter_class=formatter_class,
    )
    supervise.add_argument("--url", default=GRPC_URL, help="the server's gRPC address (model control)")
    supervise.add_argument("--host", default=LOOPBACK, help="address of the health port (0.0.0.0 for all)")
    supervise.add_argument("--health-port", type=int, default=HEALTH_PORT, help="/ready, /live and /metrics")
    supervise.add_argument(
        "--pid", type=int, default=None, help="the tritonserver process (default: the only one in this PID namespace)"
    )
    supervise.add_argument(
        "--metrics-url",
        default=METRICS_URL,
        help="Triton's metrics: requests in flight are let finish before a restart",
    )
    supervise.add_argument(
        "--drain-timeout",
        type=float,
        default=GRACE_PERIOD_S,
        help="the longest wait for them (Triton's --exit-timeout-secs)",
    )
    supervise.add_argument(
        "--state-file",
        type=Path,
        default=Path("/tmp/i2v-supervisor.json"),
        help="restarts and recoveries under way, for the supervisor that starts after this one (it exits after a "
        "kill, unless --keep-watching): on a volume that outlives this container's restarts",
    )
    supervise.add_argument(
        "--keep-watching",
        action="store_true",
        help="after killing Triton, watch the next one instead of exiting: Kubernetes (the pod's PID namespace "
        "outlives the container's restart; exiting would count as a crash); without it, the exit "
        f"({EXIT_SERVER_KILLED}) lets compose's restarted container join the new one's namespaces",
    )
    supervise.add_argument(
        "--unanswered-limit",
        type=float,
        default=UNANSWERED_LIMIT_S,
        help="seconds Triton may go without answering, once it has, before /live says 503 (a hung server)",
    )
    add_api_key_argument(supervise, "the server's key for model control")
    supervise.set_defaults(run=run_supervise)

    drain = commands.add_parser(
        "drain",
        help="make the Triton server of this container refuse new requests and wait for those in flight "
        "(the Triton container's entrypoint runs it on SIGTERM)",
        formatter_class=formatter_class,
    )
    drain.add_argument("--metrics-url", default=METRICS_URL, help="Triton's metrics")
    drain.add_argument("--timeout", type=float, default=GRACE_PERIOD_S, help="the longest wait, in seconds")
    drain.add_argument(
        "--end",
        action="store_true",
        help="end an earlier drain instead: take requests again (the entrypoint runs it at start, as a restarted "
        "container keeps its /tmp)",
    )
    drain.set_defaults(run=run_drain)


def run_serve(args: argparse.Namespace) -> int:
    from i2v.serving.serve import serve_forever
    from i2v.serving.triton_server import EmbeddedTritonServer, TritonServerError

    if not is_exported(args.model_repository):
        print(f"error: no model repository at {args.model_repository}: run `i2v export` first", file=sys.stderr)
        return EXIT_INVALID
    try:
        server = EmbeddedTritonServer(
            args.model_repository,
            host=args.host,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
            log_file=args.log_file,
            api_key=args.api_key,
            exit_timeout_s=args.grace_period,
        )
    except TritonServerError as exc:  # an address it cannot listen on
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    _log_supervisor_events()
    return serve_forever(server, health_port=args.health_port, health_host=args.host)


def _log_supervisor_events() -> None:
    """The supervisor's restarts and recoveries, with their times, on stderr."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def run_drain(args: argparse.Namespace) -> int:
    """Exit 0 once nothing is in flight, 1 if the timeout came first (the stop then goes ahead anyway)."""
    from i2v.serving.drain import begin_drain, end_drain, wait_until_idle
    from i2v.serving.processes import only_tritonserver_pid

    if args.end:
        print(f"not draining: requests are taken ({end_drain()} removed)", flush=True)
        return EXIT_OK

    path = begin_drain(metrics_url=args.metrics_url)
    print(f"draining: new requests are refused ({path}); waiting up to {args.timeout:g} s", flush=True)
    # the container's own server: a BLS whose process died has nothing in flight
    idle = wait_until_idle(args.metrics_url, args.timeout, server_pid=only_tritonserver_pid())
    print("no request in flight" if idle else "requests still in flight at the timeout", flush=True)
    return EXIT_OK if idle else EXIT_FAILED


def run_supervise(args: argparse.Namespace) -> int:
    """Until SIGTERM/SIGINT: supervise the tritonserver of this PID namespace (a sidecar sharing it). After
    killing a server whose process died it exits (`EXIT_SERVER_KILLED`), so that its container restarts too and
    joins the new server's namespaces (a restarted container gets new ones); with `--keep-watching` it goes on and
    finds the next server in the same namespace (a Kubernetes pod's)."""
    import signal
    import threading

    from i2v.serving.supervisor import HealthPortError, Supervisor, serve_health

    if args.keep_watching and args.pid is not None:
        print("error: --keep-watching finds each next server by name: leave out --pid", file=sys.stderr)
        return EXIT_INVALID
    _log_supervisor_events()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    supervisor = Supervisor(
        args.url,
        api_key=args.api_key,
        server_pid=args.pid,
        metrics_url=args.metrics_url,
        drain_timeout_s=args.drain_timeout,
        state_file=args.state_file,
        unanswered_limit_s=args.unanswered_limit,
        # the kill ends this process too, unless the next server comes up in this same PID namespace
        on_kill=None if args.keep_watching else stop.set,
    )
    try:
        health = serve_health(supervisor, args.host, args.health_port)
    except HealthPortError as exc:
        supervisor.stop()
        print(f"error: {exc}: choose another with --health-port", file=sys.stderr)
        return EXIT_INVALID
    supervisor.start()
    print(f"supervising Triton at {args.url}; health on http://{args.host}:{args.health_port}", flush=True)
    stop.wait()
    supervisor.stop()
    health.shutdown()
    health.server_close()
    # a SIGTERM, even mid-recovery: EXIT_OK
    return EXIT_SERVER_KILLED if supervisor.killed.is_set() and not args.keep_watching else EXIT_OK
