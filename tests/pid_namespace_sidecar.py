"""A Kubernetes pod's Triton and its `i2v supervise --keep-watching` sidecar, in a PID namespace of their own
(run under `unshare --pid --fork --mount-proc` by tests/test_recovery.py): the sidecar finds the server by name
there, as in a pod with `shareProcessNamespace`. A part's process is killed; the sidecar kills the server; a new
server starts in the same namespace, as the kubelet restarts the container; the sidecar, still running, watches it.

    python pid_namespace_sidecar.py REPOSITORY WORKDIR GRPC HTTP METRICS HEALTH

Prints one JSON line of what it saw; exits 0 when every step happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from ports import health_get  # this script's folder, tests/, is first on sys.path

from i2v.serving.processes import python_stubs
from i2v.serving.triton_server import EmbeddedTritonServer


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def metric(port: int, name: str, model: str) -> float:
    found = re.search(rf'^{name}{{model="{model}"}} (\S+)$', health_get(port, "/metrics")[1], re.MULTILINE)
    return float(found[1]) if found else float("nan")


def main() -> int:
    repository, workdir = Path(sys.argv[1]), Path(sys.argv[2])
    grpc, http, metrics, health_port = (int(p) for p in sys.argv[3:7])
    ports = {"grpc_port": grpc, "http_port": http, "metrics_port": metrics}
    seen: dict = {}
    server = EmbeddedTritonServer(repository, log_file=workdir / "first.log", **ports)
    server.start()
    sidecar_log = open(workdir / "sidecar.log", "w")  # noqa: SIM115 (open for the sidecar's life)
    command = [sys.executable, "-m", "i2v.cli", "supervise", "--url", f"127.0.0.1:{grpc}", "--keep-watching"]
    command += ["--metrics-url", f"http://127.0.0.1:{metrics}/metrics", "--health-port", str(health_port)]
    command += ["--state-file", str(workdir / "state.json")]
    sidecar = subprocess.Popen(command, stdout=sidecar_log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: health_get(health_port, "/ready")[0] == 200, 60, "the sidecar never said ready")
        os.kill(next(s.pid for s in python_stubs(server.pid) if s.model == "unet"), signal.SIGKILL)
        wait_for(lambda: not server.is_running(), 60, "the sidecar did not kill the server")
        server.stop()  # reaped and its shared memory removed, as the container's end does
        seen["sidecar_running_after_kill"] = sidecar.poll() is None
        seen["ready_while_down"] = health_get(health_port, "/ready")[0]
        server = EmbeddedTritonServer(repository, log_file=workdir / "second.log", **ports)  # the kubelet's restart
        server.start()
        wait_for(lambda: health_get(health_port, "/ready")[0] == 200, 60, "the sidecar never saw the new server")
        seen["restarts_unet"] = metric(health_port, "i2v_part_restarts_total", "unet")
        seen["recovering_unet"] = metric(health_port, "i2v_part_recovering", "unet")
        sidecar.send_signal(signal.SIGTERM)
        seen["sidecar_exit"] = sidecar.wait(timeout=60)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
        server.stop()
        sidecar_log.close()
    seen["sidecar_log"] = (workdir / "sidecar.log").read_text()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
