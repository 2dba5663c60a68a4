"""Stopping without dropping a video: stop taking requests, let those in flight finish, then stop.

tritonserver 2.51's own graceful shutdown does not cover a BLS pipeline: on SIGTERM it counts the decoupled
BLS request as no inference in flight, and refuses the BLS's calls to its parts ("Server not ready"), so a
video in flight fails at its next step (measured). So the draining happens before Triton is told to stop:

1. a marker file (`I2V_DRAIN_FILE`, default /tmp/i2v-draining) tells the BLS to refuse new requests with a
   retryable "unavailable: the server is shutting down"; it holds how many requests were waiting in Triton's
   queue then, which the BLS still serves (`DrainGate`): a request accepted before the drain gets its video;
2. the requests already running and queued (the BLS's `i2v_requests_in_flight`, and Triton's queue) are waited
   for, up to the grace period;
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

from i2v.params import MODEL_NAME
from i2v.serving.processes import python_stubs

DRAIN_FILE_ENV = "I2V_DRAIN_FILE"
DEFAULT_DRAIN_FILE = "/tmp/i2v-draining"
IN_FLIGHT_METRIC = "i2v_requests_in_flight"  # the BLS's gauge (`i2v.serving.metrics`): what a drain waits for
PENDING_METRIC = "nv_inference_pending_request_count"  # Triton's, per model: requests waiting in its queue


def drain_file() -> Path:
    return Path(os.environ.get(DRAIN_FILE_ENV) or DEFAULT_DRAIN_FILE)


class DrainGate:
    """Whether the BLS takes the next request off Triton's queue: yes until a drain begins; then as many as were
    waiting when it began (the queue is first in, first out: those come first), and no new one.

    Counted per BLS process: with several instances each may take that many, so a few requests that came after
    the drain may be served too, and none that came before it is refused."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.marker: tuple[int, int] | None = None  # the drain being counted (inode, mtime of its marker)
        self.queued = self.taken = 0

    def admits(self) -> bool:
        path = self.path or drain_file()
        try:
            stat = path.stat()
        except FileNotFoundError:
            self.marker = None
            return True
        if (stat.st_ino, stat.st_mtime_ns) != self.marker:  # a drain began (or began again)
            self.marker, self.taken = (stat.st_ino, stat.st_mtime_ns), 0
            try:
                self.queued = int(path.read_text() or 0)
            except (OSError, ValueError):  # unreadable, or a marker touched by hand: refuse from now on
                self.queued = 0
        if self.taken < self.queued:
            self.taken += 1
            return True
        return False


def begin_drain(path: Path | None = None, metrics_url: str | None = None) -> Path:
    """Refuse new requests from now on; the ones waiting in Triton's queue now (counted from `metrics_url`)
    are still served."""
    path = path or drain_file()
    queued = queued_requests(metrics_url) if metrics_url else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{queued}\n")
    os.replace(partial, path)  # whole: the BLS reads the count when it sees the file
    return path


def end_drain() -> Path:
    """Take requests again: a container restarted after a drain keeps its /tmp, and with it the marker."""
    path = drain_file()
    path.unlink(missing_ok=True)
    return path


def requests_in_flight(metrics_url: str, server_pid: int | None = None) -> float | None:
    """Requests being generated or waiting in the queue (the BLS's `IN_FLIGHT_METRIC` and Triton's
    pending count), from Triton's metrics port; None when it does not answer. Given the server's pid, a BLS
    whose process died counts none in flight: Triton keeps its gauge where the dead process left it."""
    counted = (IN_FLIGHT_METRIC + "{", PENDING_METRIC + "{")
    if server_pid is not None and not any(s.model == MODEL_NAME for s in python_stubs(server_pid)):
        counted = (PENDING_METRIC + "{",)
    return _metric_sum(metrics_url, counted)


def queued_requests(metrics_url: str) -> int:
    """Requests waiting in Triton's queue for the BLS model (0 when the server does not answer)."""
    return int(_metric_sum(metrics_url, (f'{PENDING_METRIC}{{model="{MODEL_NAME}"',)) or 0)


def _metric_sum(metrics_url: str, prefixes: tuple[str, ...]) -> float | None:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        with opener.open(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefixes))


def wait_until_idle(metrics_url: str, timeout_s: float, poll_s: float = 0.5, server_pid: int | None = None) -> bool:
    """Wait until no request is in flight (True) or `timeout_s` passes (False); an unreachable server is idle."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = requests_in_flight(metrics_url, server_pid)
        if not count:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
