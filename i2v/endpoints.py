"""Where the server listens by default, the addresses the client, the supervisor and the gateway use for it, and
how long a stop and the supervisor wait for it.

Triton's own default ports, and the supervisor's health port beside them (compose, Kubernetes and the
Prometheus config publish the same numbers; tests/test_deploy_configs.py holds them to these).
"""

import errno

LOOPBACK = "127.0.0.1"  # where the servers listen by default: this machine only (0.0.0.0: every interface)
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002  # Triton's defaults
HEALTH_PORT = 8003  # the supervisor's /ready, /live and /metrics
GRPC_URL = f"localhost:{GRPC_PORT}"  # as tritonclient.grpc takes it
METRICS_URL = f"http://localhost:{METRICS_PORT}/metrics"
# How long requests in flight may finish when the server is asked to stop (Triton's --exit-timeout-secs, the
# supervisor's wait before a restart, `i2v drain`): one video at the largest preset fits well within it
GRACE_PERIOD_S = 300
# How long a server that has answered may then go silent before the supervisor's /live says 503 (a hung server)
UNANSWERED_LIMIT_S = 60.0


def client_host(host: str) -> str:
    """Where a client on this machine connects to a server listening on `host`: loopback for the wildcard
    addresses; an IPv6 address in brackets, as URLs and gRPC targets write it."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return LOOPBACK
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def local_address(address: str) -> str:
    """A listen address ("0.0.0.0:8443") as a client on this machine reaches it ("127.0.0.1:8443")."""
    host, _, port = address.rpartition(":")
    return f"{client_host(host)}:{port}"


def unusable_port(port: int, host: str, exc: OSError, service: str) -> str:
    """'port 8001 (gRPC) on 127.0.0.1 is in use (Address already in use)': why a server cannot listen there."""
    problem = "is in use" if exc.errno == errno.EADDRINUSE else "cannot be listened on"
    return f"port {port} ({service}) on {host} {problem} ({exc.strerror or exc})"
