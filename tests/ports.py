"""Free loopback ports for the real servers tests start (Triton, nginx, the UI, the supervisor's health), and
what a supervisor's health port answers on one."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request


def free_ports(count: int) -> list[int]:
    """`count` distinct ports, all bound at once so that none is handed out twice."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def health_get(port: int, path: str) -> tuple[int, str]:
    """A supervisor's health endpoint on loopback: (HTTP status, body); (0, "") where nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""
