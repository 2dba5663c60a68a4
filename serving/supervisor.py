"""Keep a Triton server able to serve: restart it when one of its Python-backend processes dies, and say so to
probes.

What tritonserver 2.51 does when a Python model's stub process dies (killed by the OOM killer, a CUDA fault,
`kill -9`): the request in flight fails, and so does every later one ("Stub process 'unet_0_0' is not
healthy"), while the health endpoints and the repository index keep saying READY. Reloading just that model
is not a cure there: a plain load changes nothing (the model is unchanged, Triton keeps the dead instance);
an unload followed by a load serves again, but the dead instance's unload never finishes (measured: the
server then waits out its whole exit timeout on shutdown with "1 live models", and the dead stub stays a
zombie, since only the finalisation of that instance would reap it). python_backend fixed the detection and
the reaping upstream (#423, December 2025), after the 24.10 release this project serves.

So the supervisor restarts the server: every process of it goes, every model loads again (seconds for the tiny
model; the model's load time on a GPU), and nothing is left behind. Inside `i2v serve` it kills and starts its
own tritonserver; as `i2v supervise` beside NVIDIA's tritonserver (sharing its PID namespace) it kills that
process, and the orchestrator's restart policy starts the container again. Once a second it lists the loaded
models (the repository index, through model control) and the live stub processes (from /proc: each stub's
command line names its model's `model.py`). Its HTTP port answers the orchestrator:

- `/ready`: 200 when Triton answers and every loaded Python model has its processes; 503 from the moment one is
  missing until the server is back (so traffic goes elsewhere meanwhile), and once the supervisor stops (`i2v
  serve`'s drain after SIGTERM, when new requests are refused);
- `/live`: 200 unless restarts keep failing (`max_failures` in a row, inside `i2v serve`), or, beside NVIDIA's
  server, unless Triton stopped answering for `unanswered_limit_s` after it had answered (a hung server, which
  nothing else would restart): then the whole pod or container is the thing to restart, and the orchestrator
  does it;
- `/metrics`: `i2v_part_restarts_total{model}` (restarts caused by that model's process) and
  `i2v_part_recovering{model}` (1 from the death until the server is back with every model).

The sidecar exits after each kill (its restart joins the new server's namespaces), so it keeps both series in a
state file (`SupervisorState`): the next one goes on counting, and says "recovering" until the server is back,
for the alerts on restarts and on a recovery that does not end.

TensorRT models have no stub: a crash there takes tritonserver itself down. Inside `i2v serve` the supervisor
restarts a tritonserver that died by itself too (counted under `model="tritonserver"`); beside NVIDIA's, the
container's restart policy does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from i2v.endpoints import GRACE_PERIOD_S, UNANSWERED_LIMIT_S, unusable_port
from i2v.params import API_KEY_HEADER, MODEL_NAME
from i2v.serving.drain import requests_in_flight
from i2v.serving.processes import is_alive, only_tritonserver_pid, python_stubs

PART_RESTARTS = "i2v_part_restarts_total"
PART_RECOVERING = "i2v_part_recovering"
SERVER = "tritonserver"  # the `model` label of a restart after tritonserver itself died
log = logging.getLogger("i2v.supervisor")


class HealthPortError(RuntimeError):
    """The health port cannot be listened on: said before anything starts, not as a traceback after."""


@dataclass
class SupervisorState:
    """What one supervisor process hands the next: restarts per model, and the models whose recovery has not
    ended (since when, epoch seconds). Written before each kill, read at start; no file, nothing kept."""

    path: Path | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    recovering: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> SupervisorState:
        if path is None or not path.is_file():
            return cls(path)
        try:
            saved = json.loads(path.read_text())
            return cls(path, dict(saved.get("restarts", {})), dict(saved.get("recovering", {})))
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # a damaged file: start counting again
            log.warning("supervisor state %s unreadable (%s): starting from nothing", path, exc)
            return cls(path)

    def save(self) -> None:
        """Written before a kill, which must happen all the same where the file cannot be written: only the
        count's carrying over to the next supervisor is lost then."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps({"restarts": self.restarts, "recovering": self.recovering}))
            os.replace(partial, self.path)  # whole or not at all, should the process die right after
        except OSError as exc:
            log.warning(
                "supervisor state %s not written (%s): the next supervisor will not carry on these counts",
                self.path,
                exc,
            )


@dataclass
class Health:
    reachable: bool = False
    missing: list[str] = field(default_factory=list)  # models whose processes died; the server is restarting
    failures: int = 0  # restarts in a row that did not bring the server back

    @property
    def ready(self) -> bool:
        return self.reachable and not self.missing

    def live(self, max_failures: int) -> bool:
        return self.failures < max_failures


class Supervisor:
    """Watch one Triton server's Python models and restart the server when a model's process died.

    `server_pid` names the tritonserver process (the launcher knows it; a callable is asked each time); None
    finds the one process of that name in /proc (the sidecar, sharing Triton's PID namespace). `restart` starts
    the server again (the launcher's); None kills it and leaves the start to the container's restart policy,
    calls `on_kill` after the kill (the sidecar ends there: its restart joins the new server's namespaces), and
    `state_file` carries the metrics over to the supervisor that starts with it.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        server_pid: int | Callable[[], int | None] | None = None,
        restart: Callable[[], object] | None = None,
        on_kill: Callable[[], object] | None = None,
        metrics_url: str | None = None,
        interval_s: float = 1.0,
        max_failures: int = 3,
        restart_grace_s: float = 3.0,
        drain_timeout_s: float = GRACE_PERIOD_S,
        state_file: Path | None = None,
        unanswered_limit_s: float = UNANSWERED_LIMIT_S,
    ) -> None:
        import tritonclient.grpc as grpcclient

        self.url = url
        self.headers = {API_KEY_HEADER: api_key} if api_key else None
        self.client = grpcclient.InferenceServerClient(url)
        self._server_pid = server_pid
        self._restart = restart
        self._on_kill = on_kill
        self.interval_s = interval_s
        self.max_failures = max_failures
        self.metrics_url = metrics_url  # Triton's metrics: the BLS's requests in flight, drained before a restart
        self.restart_grace_s = restart_grace_s  # requests in flight get their error before the server goes
        self.drain_timeout_s = drain_timeout_s
        self.killed = threading.Event()  # set where the server was killed for the orchestrator to restart
        self.restarting = threading.Event()  # set while it restarts the server (and waits between attempts)
        self.seen_healthy: set[str] = set()  # models seen with all their processes since the last restart
        self.instances: dict[tuple[str, str], int] = {}  # (model, version) -> the stubs its config asks for
        self.health = Health()
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            PART_RESTARTS.removesuffix("_total"),
            "Server restarts caused by the death of this model's Python-backend process",
            ["model"],
            registry=self.registry,
        )
        self.recovering = Gauge(
            PART_RECOVERING,
            "1 while this model's process is gone and the server restarts",
            ["model"],
            registry=self.registry,
        )
        self.state = SupervisorState.load(state_file)
        for name, count in self.state.restarts.items():  # the series go on from where the last process left them
            self.restarts.labels(model=name).inc(count)
        for name in self.state.recovering:
            self.recovering.labels(model=name).set(1)
        self.unanswered_limit_s = unanswered_limit_s
        self.answered_at: float | None = None  # monotonic: Triton's last answer to this process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def server_pid(self) -> int | None:
        if callable(self._server_pid):
            return self._server_pid()
        if self._server_pid is not None:
            return self._server_pid
        return only_tritonserver_pid()

    def check_once(self) -> Health:
        """Look at every loaded Python model once; restart the server if one lost a process."""
        try:
            index = self.client.get_model_repository_index(headers=self.headers, as_json=True).get("models", [])
        except Exception as exc:  # down, restarting or stopping: not ready
            log.info("Triton at %s does not answer: %s", self.url, exc)
            pid = self.server_pid()
            died = self._restart is not None and pid is not None and not is_alive(pid)  # our server, by itself
            self.health = Health(reachable=False, missing=[SERVER] if died else [], failures=self.health.failures)
            if died:
                self.count_restart([SERVER])
                self.restart_server(pid, [SERVER])
            return self.health
        self.answered_at = time.monotonic()
        pid = self.server_pid()
        live: dict[str, int] = {}
        for stub in python_stubs(pid) if pid is not None else []:
            if stub.model:
                live[stub.model] = live.get(stub.model, 0) + 1
        missing = []
        for entry in index:
            name, version = entry["name"], entry.get("version", "")
            if entry.get("state") != "READY":  # unloaded or loading on request: its next load may bring another config
                self.instances.pop((name, version), None)
                continue
            expected = self.expected_processes(name, version)
            if not expected:  # not a Python model: no stub to watch
                continue
            count = live.get(name, 0)
            if count >= expected:  # more for a moment while a new version replaces the old one
                if name not in self.seen_healthy:  # the series exist from the start, so increase() sees the first
                    self.restarts.labels(model=name)
                    self.recovering.labels(model=name).set(0)
                self.seen_healthy.add(name)
            else:
                missing.append(name)
        if not missing:
            self.health = Health(reachable=True, failures=0)
            for name in {*self.seen_healthy, *self.state.recovering}:
                self.recovering.labels(model=name).set(0)
            if self.state.recovering:  # a recovery (begun here or by an earlier process) has ended: how long it took
                for name, since in sorted(self.state.recovering.items()):
                    log.info(
                        "%s recovered: the server is back whole %.0f s after that process died",
                        name,
                        time.time() - since,
                    )
                self.state.recovering.clear()
                self.state.save()
            return self.health
        self.health = Health(reachable=True, missing=missing, failures=self.health.failures)  # probes: not ready
        self.count_restart(missing)
        self.restart_server(pid, missing)
        return self.health

    def count_restart(self, missing: list[str]) -> None:
        """The metrics of a restart these models' deaths caused, kept in the state file before anything is killed."""
        for name in missing:
            self.recovering.labels(model=name).set(1)
            self.restarts.labels(model=name).inc()
            self.state.restarts[name] = self.state.restarts.get(name, 0) + 1
            self.state.recovering.setdefault(name, time.time())
        self.state.save()

    def expected_processes(self, name: str, version: str) -> int:
        """The stub processes a loaded version of this model runs: one per instance its config asks for (KIND_GPU:
        per GPU it lists); 0 for a model of another backend. Counting against the config, not against what was
        seen, keeps a model reloaded on request (`i2v models load`: a new version's stub starts before the old
        one's stops) from looking like a death."""
        if (name, version) not in self.instances:
            config = self.client.get_model_config(name, headers=self.headers, as_json=True)["config"]
            expected = 0
            if config.get("backend") == "python":
                expected = (
                    sum(
                        int(group.get("count", 1))
                        * (len(group.get("gpus") or [0]) if group.get("kind") == "KIND_GPU" else 1)
                        for group in config.get("instance_group", [])
                    )
                    or 1
                )
            self.instances[(name, version)] = expected
        return self.instances[(name, version)]

    def restart_server(self, pid: int | None, missing: list[str]) -> None:
        log.warning("the process of %s died: restarting the server", ", ".join(missing))
        self.seen_healthy.clear()
        self.instances.clear()
        if self._restart is None:
            self.drain(bls_died=MODEL_NAME in missing)
            if self._stop.is_set():  # this supervisor is stopping: the server's own stop is its container's
                return
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)  # the container's restart policy starts it again
                except ProcessLookupError:
                    log.info("tritonserver (pid %d) had already exited", pid)
            self.killed.set()
            self.answered_at = None  # the next server has not answered yet: its loading is no hang
            if self._on_kill is not None:
                self._on_kill()
            return
        self.restarting.set()  # from the decision on: the launcher must not take the server's end for its own
        try:
            if SERVER not in missing:  # a dead server has nothing left to drain
                self.drain(bls_died=MODEL_NAME in missing)
            for attempt in range(self.max_failures):  # 2, 4, 8 s apart: a model that cannot load will not soon
                if self._stop.is_set():  # a shutdown came meanwhile: the launcher stops the server, not restarts it
                    log.info("stopping: the server is not restarted")
                    return
                try:
                    self._restart()
                    return
                except Exception as exc:
                    if self._stop.is_set():  # its start-up cut short by the shutdown: not a failed restart
                        return
                    self.health = Health(reachable=False, missing=missing, failures=attempt + 1)
                    log.error("restart %d of %d failed: %s", attempt + 1, self.max_failures, exc)
                    if attempt + 1 < self.max_failures and self._stop.wait(2.0 ** (attempt + 1)):
                        return
        finally:
            self.restarting.clear()
        # /live is 503 from here; `i2v serve`, whose server is gone, exits with its error for the orchestrator

    def drain(self, *, bls_died: bool) -> None:
        """Before the restart, let the requests in flight end: a request that still needs the dead model gets the
        BLS's clear "unavailable" error at once, one that does not (the text encoder died while it denoises)
        finishes its video. Bounded by `drain_timeout_s`; a dead BLS (whose own count can no longer fall) or an
        unknown count gets `restart_grace_s` for its error to reach the client."""
        deadline = time.monotonic() + (
            self.restart_grace_s if bls_died or not self.metrics_url else self.drain_timeout_s
        )
        while time.monotonic() < deadline and not self._stop.is_set():
            if not bls_died and self.metrics_url and requests_in_flight(self.metrics_url) == 0:
                return
            self._stop.wait(0.5)

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="i2v-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.client.close()

    def _run(self) -> None:
        """One failed look (a model unloaded between two calls, a process gone mid-kill) must not end the
        supervision: nothing would be restarted again, and the probes would keep their last answer."""
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:
                log.exception("supervisor check failed; looking again in %g s", self.interval_s)
            self._stop.wait(self.interval_s)

    def unanswered(self) -> bool:
        """Beside NVIDIA's server: it answered this process once, then not for `unanswered_limit_s` (hung). Inside
        `i2v serve` its restarts take it away on purpose, and a long load must not count."""
        return (
            self._restart is None
            and self.answered_at is not None
            and time.monotonic() - self.answered_at > self.unanswered_limit_s
        )

    def status(self) -> dict:
        """What the probes get; once stopped (`i2v serve` drains, new requests are refused) not ready, still live."""
        health = self.health
        stopping = self._stop.is_set()
        return {
            "ready": health.ready and not stopping,
            "live": health.live(self.max_failures) and not self.unanswered(),
            "stopping": stopping,
            "reachable": health.reachable,
            "missing": health.missing,
            "failed_restarts": health.failures,
        }


def serve_health(supervisor: Supervisor, host: str, port: int) -> ThreadingHTTPServer:
    """/ready, /live and /metrics on `port`, in a background thread; `.shutdown()` then `.server_close()` stop it
    (without the close, the port goes on taking connections that nothing answers). Raises `HealthPortError` when
    the port cannot be listened on."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                body, status, kind = generate_latest(supervisor.registry), 200, CONTENT_TYPE_LATEST
            elif self.path in ("/ready", "/live"):
                state = supervisor.status()
                status = 200 if state[self.path.lstrip("/")] else 503
                body, kind = (json.dumps(state) + "\n").encode(), "application/json"
            else:
                body, status, kind = b"not found: /ready, /live or /metrics\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # probes every few seconds: not worth a log line each
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise HealthPortError(unusable_port(port, host, exc, "the supervisor's health")) from exc
    threading.Thread(target=server.serve_forever, name="i2v-health", daemon=True).start()
    return server
