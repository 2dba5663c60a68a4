"""`i2v serve` in the foreground: the server, its supervisor and health port, and a stop on SIGINT/SIGTERM that
lets the videos in flight finish (`i2v.serving.triton_server` runs the process itself)."""

from __future__ import annotations

import signal
import sys
import threading
import time

from i2v.arguments import EXIT_FAILED, EXIT_OK
from i2v.endpoints import LOOPBACK, client_host
from i2v.serving.triton_server import EmbeddedTritonServer, TritonServerError


def _gone(server: EmbeddedTritonServer, supervisor) -> bool:
    """The server has ended for good: it is not running and no restart is coming (without a supervisor, none
    ever; with one, once it has given up: restarts failed `max_failures` times in a row)."""
    if server.is_running() or server.restarting:
        return False
    if supervisor is None:
        return True
    return not supervisor.restarting.is_set() and not supervisor.health.live(supervisor.max_failures)


def serve_forever(server: EmbeddedTritonServer, *, health_port: int | None = None, health_host: str = LOOPBACK) -> int:
    """Run the server in the foreground until SIGINT/SIGTERM or until it exits by itself.

    SIGTERM is a graceful stop: Triton refuses new requests and lets those in flight finish for up to the
    server's `exit_timeout_s`. With `health_port`, a supervisor (`i2v.serving.supervisor`) restarts the server
    when a model's process or tritonserver itself dies, and answers /ready, /live and /metrics there (from before
    Triton starts, so a taken port is said at once); it stops first, so a shutdown's unloads are not taken for
    crashes.

    Returns 0 when stopped by a signal (also during start-up), 1 when it could not start, otherwise the
    server's own exit status (128 + N when it was killed by signal N).
    """
    requested: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only record: raising here could land inside stop(). A second Ctrl-C changes nothing, since
        # stop() escalates to SIGKILL by itself.
        requested.append(signum)
        server.interrupted.set()

    supervisor = health = None
    if health_port:  # listened on before Triton starts: a taken port costs no model load (not ready meanwhile)
        from i2v.serving.supervisor import HealthPortError, Supervisor, serve_health

        supervisor = Supervisor(
            server.endpoints.grpc_url,
            api_key=server.api_key,
            server_pid=lambda: server.pid,
            restart=server.restart,
            metrics_url=server.endpoints.metrics_url,
            drain_timeout_s=server.exit_timeout_s,
        )
        try:
            health = serve_health(supervisor, health_host, health_port)
        except HealthPortError as exc:
            supervisor.stop()
            print(f"error: {exc}: choose another with --health-port, or 0 for none", file=sys.stderr)
            return EXIT_FAILED
    server.interrupted.clear()  # from here on, a signal is this run's
    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        endpoints = server.start()
        print(f"Triton ready (pid {server.pid}), model repository {server.model_repository}")
        print(f"  gRPC     {endpoints.grpc_url}")
        print(f"  HTTP     {endpoints.http_url}")
        print(f"  metrics  {endpoints.metrics_url}")
        if supervisor is not None:
            supervisor.start()
            print(f"  health   http://{client_host(health_host)}:{health_port}/ready, /live, /metrics")
        print(f"  log      {server.log_path}")
        print("Press Ctrl-C to stop.", flush=True)
        while not requested and not _gone(server, supervisor):
            time.sleep(0.2)
    except TritonServerError as exc:
        if not requested:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        if supervisor is not None:
            supervisor.stop()  # its probes go on answering through the drain: not ready, live
        if requested:
            print(
                f"stopping Triton ({signal.Signals(requested[0]).name}): new requests are refused, those in flight "
                f"may finish for up to {server.exit_timeout_s} s ...",
                flush=True,
            )
            if not server.drain():
                print("the grace period ended with requests still in flight", flush=True)
        server.stop()
        if server.killed_at_stop:
            print("Triton did not stop in time (a model was still unloading): it was killed", flush=True)
        if health is not None:
            health.shutdown()
            health.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if requested:
        print("Triton stopped.", flush=True)
        return EXIT_OK
    code = server.returncode if server.returncode is not None else 1
    print(f"Triton exited by itself with code {code}; log: {server.log_path}", file=sys.stderr)
    return 128 - code if code < 0 else code
