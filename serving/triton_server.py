"""Run NVIDIA's own `tritonserver` from the nvidia-pytriton wheel (found and prepared by
`i2v.serving.triton_install`) on a model repository, and stop, drain and restart it.

The server runs in its own session, so a Ctrl-C in the terminal reaches our code, which stops it cleanly
(SIGTERM, then SIGKILL to the whole process group, stubs included).

On a GPU host the server gets the CUDA memory pool the export planned (`cuda_memory_pool_bytes`, by default the
repository's model_info.json value): the Python backend passes GPU tensors between the BLS and the parts through
it, on every GPU the driver lists (`i2v.serving.gpus`).
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from i2v.endpoints import LOOPBACK, client_host, unusable_port
from i2v.model.info import MODEL_INFO_FILE, ModelInfo
from i2v.model.repository_layout import served_pipeline_dir
from i2v.params import API_KEY_NAME, FORWARDED_HEADERS
from i2v.serving.drain import DRAIN_FILE_ENV
from i2v.serving.gpus import count_gpus, visible_gpu_ids
from i2v.serving.processes import process_group_members
from i2v.serving.triton_install import (
    STUB_SITE_ENV,
    TritonInstall,
    TritonServerError,
    check_numpy,
    find_tritonserver,
    prepare_backend_dir,
    server_env,
    stub_environment,
)


@dataclass(frozen=True)
class TritonEndpoints:
    """Where clients reach a running server (loopback addresses when it listens on all interfaces)."""

    grpc_url: str  # "127.0.0.1:PORT", as tritonclient.grpc wants it
    http_url: str  # "127.0.0.1:PORT", as tritonclient.http wants it
    metrics_url: str  # "http://127.0.0.1:PORT/metrics"


def repository_cuda_memory_pool_bytes(model_repository: Path) -> int | None:
    """The CUDA memory pool the export planned for this repository, from model_info.json of the BLS version
    Triton serves (the highest); None, Triton's default, for a repository exported before it was recorded."""
    pipeline = served_pipeline_dir(model_repository)
    if not (pipeline / MODEL_INFO_FILE).is_file():
        return None
    return ModelInfo.load(pipeline).cuda_memory_pool_bytes or None


# Strong references: a started server must not be dropped, and stopped, by garbage collection alone.
_LIVE_SERVERS: set[EmbeddedTritonServer] = set()
# With nothing in flight, a stop only unloads the models: about 2 s for the tiny model. tritonserver 2.51 now and then
# never finishes unloading the BLS model (its stub idle, no inference in flight: seen at the end of the test suite,
# where the server then waited out its whole exit timeout, and reported as a stop that took 300 s), so an idle
# server is killed, stubs included, after this long.
UNLOAD_TIMEOUT_S = 15.0


@atexit.register
def _stop_live_servers() -> None:
    """The server runs in its own session, so nothing else stops it when this interpreter exits."""
    for server in list(_LIVE_SERVERS):
        server.stop(timeout_s=10)


class EmbeddedTritonServer:
    """One `tritonserver` process on a model repository, with its own backend directory and log.

    Ports left as None are picked free when the object is made, so `endpoints` is known before `start()`.
    `cuda_memory_pool_bytes` sizes Triton's CUDA memory pool on every GPU the server will see (None: the
    repository's planned value; 0, or a repository without one: Triton's default, 64 MiB); on a machine
    without a GPU it is left out. The server runs in its backend directory, not the caller's working folder:
    paths in `extra_args` must be absolute.
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        host: str = LOOPBACK,
        log_file: Path | None = None,
        api_key: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
        log_verbose: int = 0,
        cuda_memory_pool_bytes: int | None = None,
        exit_timeout_s: int = 30,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if cuda_memory_pool_bytes is None:
            cuda_memory_pool_bytes = repository_cuda_memory_pool_bytes(self.model_repository)
        self.cuda_memory_pool_bytes = cuda_memory_pool_bytes
        self.api_key = api_key
        self.env = dict(env or {})  # added to this process's environment for the server and its models
        stub_site = self.env.get(STUB_SITE_ENV) or os.environ.get(STUB_SITE_ENV)
        self.stub_site = Path(stub_site).resolve() if stub_site else None
        self.host = _listen_host(host)
        self.extra_args = tuple(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self.exit_timeout_s = exit_timeout_s
        ports = _pick_ports(self.host, (grpc_port, http_port, metrics_port))
        self.grpc_port, self.http_port, self.metrics_port = ports
        if log_file is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            log_file = Path(name)
        self.log_path = Path(log_file)
        local = client_host(self.host)
        self.endpoints = TritonEndpoints(
            grpc_url=f"{local}:{self.grpc_port}",
            http_url=f"{local}:{self.http_port}",
            metrics_url=f"http://{local}:{self.metrics_port}/metrics",
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._backend_dir: Path | None = None
        self._returncode: int | None = None
        # set (by `i2v.serving.serve`'s signal handler) to abandon start-up, a restart's included; start() leaves it set
        self.interrupted = threading.Event()
        # this server's drain marker (`i2v.serving.drain`): present, its BLS refuses new requests. Its own unless
        # the caller's env names one; stop() removes only its own
        self._own_drain_file = DRAIN_FILE_ENV not in self.env
        own = Path(tempfile.gettempdir()) / f"i2v-draining-{os.getpid()}-{self.grpc_port}"
        self.env.setdefault(DRAIN_FILE_ENV, str(own))
        self.restarting = False  # True while restart() replaces the process: not an exit
        self.killed_at_stop = False  # the last stop() had to kill the server (its models not all unloaded)
        self._shm_prefix = ""

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> TritonEndpoints:
        """Start the server and wait until it reports ready (all models loaded)."""
        if self._process is not None:
            raise TritonServerError("the server is already started; stop() it first")
        if not self.model_repository.is_dir():
            raise TritonServerError(f"model repository not found: {self.model_repository}")
        check_numpy(self.stub_site)
        install = find_tritonserver()
        _check_ports_free(self.host, {"grpc": self.grpc_port, "http": self.http_port, "metrics": self.metrics_port})
        self.drain_file.unlink(missing_ok=True)  # a new server takes requests
        try:
            self._launch(install)
            self._wait_until_ready()
        except BaseException:
            self.stop(timeout_s=5)
            raise
        return self.endpoints

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM (Triton refuses new requests, lets those in flight finish for up to `exit_timeout_s`, unloads
        models and ends its stubs); SIGKILL to the process group after `timeout_s`. By default that is the grace
        period and 10 s more, or `UNLOAD_TIMEOUT_S` when nothing is in flight (after `drain()`): Triton then
        only unloads its models. `killed_at_stop` says whether it had to be killed.

        Safe to call twice or before start().
        """
        self.killed_at_stop = False
        if timeout_s is None:
            timeout_s = UNLOAD_TIMEOUT_S if self._idle() else self.exit_timeout_s + 10
        process = self._process
        if process is not None:
            try:
                if not self._has_exited():
                    process.send_signal(signal.SIGTERM)
                    if not self._wait_exited(timeout_s):
                        self.killed_at_stop = True
                        _kill_group(process.pid)
                # The leader is not reaped yet, so its group id cannot be reused: stubs left behind are ours.
                deadline = time.monotonic() + 2.0
                while _group_members(process.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _group_members(process.pid):
                    _kill_group(process.pid)
            finally:
                self._returncode = process.wait()
                self._process = None
                _LIVE_SERVERS.discard(self)
                _remove_shm_regions(self._shm_prefix)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._backend_dir is not None:
            shutil.rmtree(self._backend_dir, ignore_errors=True)
            self._backend_dir = None
        if self._own_drain_file:  # named after this process, so never reused: one per server stopped would pile up
            self.drain_file.unlink(missing_ok=True)

    @property
    def drain_file(self) -> Path:
        return Path(self.env[DRAIN_FILE_ENV])

    def is_running(self) -> bool:
        return self._process is not None and not self._has_exited()

    def _idle(self) -> bool:
        """Running with no request in flight or queued (the metrics answer and say 0)."""
        from i2v.serving.drain import requests_in_flight

        return self.is_running() and requests_in_flight(self.endpoints.metrics_url, self.pid) == 0

    def drain(self, timeout_s: float | None = None) -> bool:
        """Refuse new requests and wait until those in flight and queued have finished (True) or `timeout_s`
        (default: the exit timeout) has passed (False). Then `stop()` drops nothing that was accepted."""
        from i2v.serving.drain import begin_drain, wait_until_idle

        begin_drain(self.drain_file, self.endpoints.metrics_url if self.is_running() else None)
        timeout_s = self.exit_timeout_s if timeout_s is None else timeout_s
        return (
            wait_until_idle(self.endpoints.metrics_url, timeout_s, server_pid=self.pid) if self.is_running() else True
        )

    def restart(self) -> TritonEndpoints:
        """Kill the server and its stubs at once and start it again on the same ports: the recovery from a dead
        Python-backend process (`i2v.serving.supervisor`). Not SIGTERM: 2.51 cannot unload the dead model, so a
        graceful stop would wait out the whole exit timeout."""
        self.restarting = True
        try:
            if self._process is not None:
                _kill_group(self._process.pid)
                self.stop(timeout_s=5)
            return self.start()
        finally:
            self.restarting = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The server's exit status once stopped (negative: killed by that signal); None before."""
        return self._returncode

    def __enter__(self) -> EmbeddedTritonServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, n: int = 40) -> str:
        """The last `n` lines of the server log: where Triton says why a model did not load."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 256 * 1024))
                data = log.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-n:])

    def command(self, binary: Path, backend_dir: Path) -> list[str]:
        """The server command line; `extra_args` come last so they can override anything before them."""
        args = [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--metrics-config=summary_latencies=true",  # p50/p95 request and queue latency, as compose's server
            "--disable-auto-complete-config",
            # Explicit model control: every model loaded at start, then loaded/unloaded on request only.
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--log-verbose={self.log_verbose}",
            # On SIGTERM, in-flight requests may finish for this long (new ones are refused meanwhile).
            f"--exit-timeout-secs={self.exit_timeout_s}",
            # The gateway's headers (tenant, allowed models) reach the models as request parameters.
            f"--grpc-header-forward-pattern={FORWARDED_HEADERS}",
            f"--http-header-forward-pattern={FORWARDED_HEADERS}",
        ]
        if self._shm_prefix:  # our own prefix, so stop() can remove the regions a killed server leaves in /dev/shm
            args.append(f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}")
        if self.api_key:
            # Inference and model control need the key; health, metadata and metrics stay open.
            restricted = f"inference,model-repository:{API_KEY_NAME}={self.api_key}"
            args += [f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}"]
        if self.cuda_memory_pool_bytes:
            # The pool the Python backend moves GPU tensors through (BLS <-> parts); a tensor that does not fit
            # falls back to cudaMalloc + CUDA IPC per transfer. The GPUs are asked for only when there is a pool.
            for gpu in self.gpu_ids():
                args.append(f"--cuda-memory-pool-byte-size={gpu}:{self.cuda_memory_pool_bytes}")
        return args + list(self.extra_args)

    def gpu_ids(self) -> tuple[int, ...]:
        """The CUDA device ids the server will see: the driver's GPUs, narrowed by its CUDA_VISIBLE_DEVICES."""
        return visible_gpu_ids(count_gpus(), {**os.environ, **self.env}.get("CUDA_VISIBLE_DEVICES"))

    # -- internals ---------------------------------------------------------------------------------------

    def _launch(self, install: TritonInstall) -> None:
        self._backend_dir = prepare_backend_dir(install)
        stub_bin = None
        if self.stub_site is not None:  # the models' own environment, cleaned up with the backend folder
            stub_bin = stub_environment(self._backend_dir / "stub-environment", self.stub_site)
        self._shm_prefix = f"i2v_triton_{os.getpid()}_{secrets.token_hex(4)}_"
        self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server; kept on restarts
        self._returncode = None
        self._process = subprocess.Popen(
            self.command(install.binary, self._backend_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env={**server_env(install, stub_bin), **self.env},
            # The stubs put their working folder on sys.path: a checkout's `i2v/` there would shadow the installed
            # package (`i2v.serving` is not in it). The repository and backend paths given to it are absolute.
            cwd=self._backend_dir,
            start_new_session=True,  # Ctrl-C goes to us, not straight to the server and its stubs
        )
        _LIVE_SERVERS.add(self)

    def _wait_until_ready(self) -> None:
        """Ready: every model loaded (HTTP health) and the metrics endpoint up, which Triton starts last, after
        gRPC and HTTP; a caller scraping metrics right after start-up would otherwise find nothing listening.
        And our process still running (a port another server listens on is refused before launch,
        `_check_ports_free`; this catches a Triton that exited after binding)."""
        health = f"http://{client_host(self.host)}:{self.http_port}/v2/health/ready"
        # An http_proxy in the environment must not see loopback health checks.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.startup_timeout_s
        pending = [health, self.endpoints.metrics_url]
        while True:
            if self._has_exited():
                what = f"tritonserver exited with code {self._peek_returncode()} during start-up"
                raise TritonServerError(self._failure_message(what))
            if not pending:
                return
            if self.interrupted.is_set():
                raise TritonServerError("start-up interrupted by a signal")
            try:
                with opener.open(pending[0], timeout=2) as response:
                    if response.status == 200:
                        pending.pop(0)
                        continue
            except (OSError, http.client.HTTPException):
                pass  # not listening yet, or listening but models still loading (HTTP 400)
            if time.monotonic() > deadline:
                raise TritonServerError(
                    self._failure_message(f"tritonserver did not become ready within {self.startup_timeout_s:g} s")
                )
            time.sleep(0.1)

    def _failure_message(self, what: str) -> str:
        """The server's own reasons first (buried in a 60-line banner otherwise), then the log's tail."""
        reasons = _error_lines(self.log_tail(400))
        summary = "".join(f"\n  {reason}" for reason in reasons)
        summary = summary or " (no error line in the log)"
        return f"{what}:{summary}\nlog: {self.log_path}; last lines:\n{self.log_tail(40)}"

    def _has_exited(self) -> bool:
        return self._peek_returncode() is not None

    def _peek_returncode(self) -> int | None:
        """Exit status without reaping: the group id stays ours until stop() has killed leftover stubs."""
        process = self._process
        if process is None or process.returncode is not None:
            return process.returncode if process is not None else self._returncode
        try:
            info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return 1  # reaped by someone else's wait(): gone, status unknown
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def _wait_exited(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self._has_exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


# Triton's error lines: E1124 21:10:55.752447 4771 model_lifecycle.cc:642] "failed to load 'b' ..."
_ERROR_LINE = re.compile(r'^E\d{4} [\d:.]+\s+\d+ \S+\] "(?P<message>.*)"$')
_HARMLESS = ("CudaDriverHelper", "NVML", "DCGM")  # seen on every machine without a GPU


def _error_lines(log_text: str) -> list[str]:
    """First line of each distinct error Triton logged, plus its final `error: ...` line."""
    reasons: list[str] = []
    for line in log_text.splitlines():
        match = _ERROR_LINE.match(line)
        message = match["message"] if match else line if line.startswith("error: ") else None
        if message is None or any(word in message for word in _HARMLESS):
            continue
        message = message.split("\\n", 1)[0].strip()
        if message and message not in reasons:
            reasons.append(message)
    return reasons


def _listen_host(host: str) -> str:
    """`host` as tritonserver can listen on it: an IPv4 address. Its HTTP and metrics services take addresses
    only (given "localhost", 2.51 listens on 255.255.255.255, and is never ready), so a name is resolved here;
    its gRPC service takes HOST:PORT, which an IPv6 address makes ambiguous (it then fails to start, saying the
    port is in use)."""
    if ":" in host:
        raise TritonServerError(
            f"cannot listen on {host}: the embedded tritonserver takes IPv4 addresses only; use 0.0.0.0 for every "
            "interface, or an IPv4 address"
        )
    try:
        (*_, (address, _port)), *_ = socket.getaddrinfo(host or "0.0.0.0", None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise TritonServerError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    return address


def _pick_ports(host: str, wanted: Sequence[int | None]) -> list[int]:
    """Free ports for the None entries, all distinct: each probe socket stays bound until all are picked."""
    ports = list(wanted)
    held: list[socket.socket] = []
    try:
        for index in range(len(ports)):
            while ports[index] is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind((host, 0))
                candidate = sock.getsockname()[1]
                if candidate not in ports:
                    ports[index] = candidate
    finally:
        for sock in held:
            sock.close()
    return [int(port) for port in ports if port is not None]


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Refuse to start on a port something else listens on: Triton would only log that one service failed, and
    whatever answers there (another Triton, any HTTP server) would be taken for this server. SO_REUSEADDR, as
    Triton's own sockets: a closed connection's TIME_WAIT (after a restart) is no listener."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise TritonServerError(
                    f"{unusable_port(port, host, exc, name)}: another server listens there; stop it or choose "
                    "another port"
                ) from exc


def _group_members(pgid: int) -> list[int]:
    """The group's live processes but its leader: the stubs, if any outlived the server."""
    return [pid for pid in process_group_members(pgid) if pid != pgid]


def _remove_shm_regions(prefix: str) -> None:
    """A server killed or failing during start-up leaves its Python-backend regions (1 MiB and up) behind."""
    if not prefix:
        return
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
