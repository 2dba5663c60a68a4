"""Run Debian's nginx as the gateway on a rendered configuration: for tests, and to run one by hand.

nginx runs in the foreground of its own session (`-g 'daemon off;'`) with its prefix, pid, logs and temp
files in a private folder; `reload()` re-renders the configuration and sends SIGHUP, so a tenant added or
revoked takes effect while the streams in flight finish on the old workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from i2v.endpoints import local_address
from i2v.gateway.nginx_config import JS_MODULE, GatewaySettings, write_config
from i2v.gateway.tenants import Tenant

INSTALL_HINT = "apt-get install nginx libnginx-mod-http-js (Debian/Ubuntu)"


class GatewayError(RuntimeError):
    """nginx is missing, refused the configuration, or did not start."""


def find_nginx() -> tuple[str, str]:
    """(the nginx binary, its JavaScript module); `GatewayError` naming what is missing."""
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if binary is None:
        raise GatewayError(f"nginx is not installed: {INSTALL_HINT}")
    if not Path(JS_MODULE).is_file():
        raise GatewayError(f"nginx's JavaScript module (njs) is missing at {JS_MODULE}: {INSTALL_HINT}")
    return binary, JS_MODULE


class NginxGateway:
    """nginx on `settings` (its listen addresses) and `tenants`."""

    def __init__(self, tenants: list[Tenant], settings: GatewaySettings, folder: Path | None = None) -> None:
        self.binary, js_module = find_nginx()
        self.folder = Path(folder or tempfile.mkdtemp(prefix="i2v-gateway-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.access_log = self.folder / "access.log"
        self.error_log = self.folder / "error.log"
        # nginx's workers (`nobody` under a root master) write request bodies here: a folder they can reach
        self.temp_dir = Path(tempfile.mkdtemp(prefix="i2v-gateway-temp-"))
        self.temp_dir.chmod(0o711)
        self.settings = dataclasses.replace(
            settings,
            access_log=str(self.access_log),
            error_log=str(self.error_log),
            pid_file=str(self.folder / "nginx.pid"),
            temp_dir=str(self.temp_dir),
            js_module=js_module,
        )
        self.tenants = list(tenants)
        self.config = write_config(self.tenants, self.settings, self.folder)
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return local_address(self.settings.grpc_listen)

    @property
    def http_url(self) -> str:
        scheme = "https" if self.settings.tls_cert else "http"
        return f"{scheme}://{local_address(self.settings.http_listen)}"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.folder), "-c", str(self.config), *extra]

    def test_config(self) -> None:
        """`nginx -t`: the configuration's errors, in nginx's words."""
        result = subprocess.run(self.command("-t"), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise GatewayError(f"nginx refused the configuration {self.config}:\n{result.stderr.strip()}")

    def start(self, timeout_s: float = 20.0) -> NginxGateway:
        self.test_config()
        self._output = open(self.folder / "nginx.out", "ab")  # noqa: SIM115 - lives as long as nginx
        self._process = subprocess.Popen(
            self.command("-g", "daemon off;"),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not all(_listening(a) for a in (self.grpc_url, self.settings.http_listen)):
            if self._process.poll() is not None:
                raise GatewayError(f"nginx exited with code {self._process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise GatewayError(f"nginx did not listen within {timeout_s:g} s: {self.log_tail()}")
            time.sleep(0.05)
        return self

    def reload(self, tenants: list[Tenant]) -> None:
        """New tenants and keys: re-render, check with `nginx -t`, then SIGHUP (streams in flight finish)."""
        previous = self.config.read_bytes()
        self.config = write_config(list(tenants), self.settings, self.folder)  # refuses bad tenants unwritten
        try:
            self.test_config()
        except GatewayError:
            self.config.write_bytes(previous)  # the running gateway keeps its tenants
            raise
        self.tenants = list(tenants)
        if self._process is None:
            raise GatewayError("nginx is not running")
        old_workers = _workers(self._process.pid)
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # done once every old worker stopped accepting (its streams go on)
            log = self.error_log.read_text(errors="replace")
            if all(
                f"{pid}#{pid}: gracefully shutting down" in log or not Path(f"/proc/{pid}").exists()
                for pid in old_workers
            ):
                return
            time.sleep(0.05)
        raise GatewayError(f"nginx's old workers did not stop accepting after the reload: {self.log_tail()}")

    def stop(self) -> None:
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGQUIT)  # graceful: in-flight requests finish
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log_tail(self, n: int = 20) -> str:
        lines = []
        for path in (self.folder / "nginx.out", self.error_log):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines)

    def __enter__(self) -> NginxGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(address: str) -> bool:
    host, _, port = local_address(address).rpartition(":")
    with contextlib.suppress(OSError), socket.create_connection((host.strip("[]"), int(port)), 1):
        return True
    return False


def _workers(master_pid: int) -> list[int]:
    """nginx's worker processes (children of the master)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    with contextlib.suppress(OSError):
        return [int(pid) for pid in children.read_text().split()]
    return []
