"""Stopping without dropping a video: stop taking requests, let those in flight finish, then stop.

tritonserver 2.51's own graceful shutdown does not cover a BLS pipeline: on SIGTERM it counts the decoupled
BLS request as no inference in flight, and refuses the BLS's calls to its parts ("Server not ready"), so a
video in flight fails at its next step (measured). So the draining happens before Triton is told to stop:

1. a marker file (`I2V_DRAIN_FILE`, default /tmp/i2v-draining) tells the BLS to refuse new requests with a
   retryable "unavailable: the server is shutting down";
2. the requests already running (the BLS's `i2v_requests_in_flight`, and Triton's queue) are waited for, up to
   the grace period;
3. then Triton stops.

`i2v serve` does this on SIGTERM; beside NVIDIA's tritonserver, the container's entrypoint
(docker/triton-entrypoint.sh, in compose and Kubernetes) runs `i2v drain` on SIGTERM before passing it on
(the stop grace period and terminationGracePeriodSeconds above the drain's timeout).
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

DRAIN_FILE_ENV = "I2V_DRAIN_FILE"
DEFAULT_DRAIN_FILE = "/tmp/i2v-draining"
IN_FLIGHT_METRIC = "i2v_requests_in_flight"  # the BLS's gauge (`i2v.serving.metrics`): what a drain waits for


def drain_file() -> Path:
    return Path(os.environ.get(DRAIN_FILE_ENV) or DEFAULT_DRAIN_FILE)


def draining() -> bool:
    """True once a drain has begun: the BLS then refuses new requests."""
    return drain_file().exists()


def begin_drain() -> Path:
    path = drain_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def end_drain() -> Path:
    """Take requests again: a container restarted after a drain keeps its /tmp, and with it the marker."""
    path = drain_file()
    path.unlink(missing_ok=True)
    return path


def requests_in_flight(metrics_url: str) -> float | None:
    """Requests being generated or waiting in the queue (the BLS's `IN_FLIGHT_METRIC` and Triton's
    pending count of the BLS model), from Triton's metrics port; None when it does not answer."""
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        with opener.open(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(IN_FLIGHT_METRIC + "{") or line.startswith("nv_inference_pending_request_count{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until_idle(metrics_url: str, timeout_s: float, poll_s: float = 0.5) -> bool:
    """Wait until no request is in flight (True) or `timeout_s` passes (False); an unreachable server is idle."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = requests_in_flight(metrics_url)
        if not count:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
