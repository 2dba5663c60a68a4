"""nginx's configuration for the gateway, rendered from the tenants file and the gateway's settings.

Why nginx with a key-hashing script (njs): the tenants file and the rendered configuration hold only sha256
hashes of the tenants' keys; nginx hashes the key a request presents (`tenant_key.js`) and maps the hash to
the tenant. Rate limits (`limit_req`), concurrent streams (`limit_conn`), TLS, the body limit and gRPC
proxying with bidirectional streams are nginx's own. Per-tenant metrics: nginx sends each access-log line
over syslog (UDP) to mtail, which counts them with `tenant_metrics.mtail` and serves them to Prometheus. The
one secret in the output is Triton's own key, which nginx sends upstream: the output folder is written 0700
and the configuration 0600, outside git.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from i2v.gateway.tenants import Tenant, check_tenants
from i2v.params import (
    API_KEY_HEADER,
    API_KEY_NAME,
    FORBIDDEN,
    MODELS_HEADER,
    RATE_LIMITED,
    RETRY_AFTER,
    STREAMS_LIMITED,
    TENANT_HEADER,
    UNAVAILABLE,
)

CONFIG_NAME = "nginx.conf"
SCRIPT_NAME = "tenant_key.js"
METRICS_PROGRAM = "tenant_metrics.mtail"  # mtail --progs <the rendered folder>
# One JSON line per request; `tenant_metrics.mtail` reads these fields, in this order.
LOG_FIELDS = (
    '{"time":"$time_iso8601","tenant":"$tenant","protocol":"$protocol","status":$status,'
    '"grpc_status":"$sent_http_grpc_status$sent_trailer_grpc_status","limit_req":"$limit_req_status",'
    '"limit_conn":"$limit_conn_status","refusal":"$refusal","method":"$request_method","uri":"$uri",'
    '"bytes_in":$request_length,'
    '"bytes_out":$bytes_sent,"seconds":$request_time}'
)
JS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"  # Debian's libnginx-mod-http-js and nginx's image
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")
# Where a client's key arrives (the configuration and the key-hashing script): Triton's own names for it
KEY_HEADERS = {"API_KEY_HEADER": API_KEY_HEADER, "API_KEY_NAME": API_KEY_NAME}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.~+/=-]{1,256}$")  # what may stand inside the configuration's quotes
# The settings nginx reads as file paths; "stderr" and "syslog:..." are log targets, not files.
PATH_FIELDS = ("tls_cert", "tls_key", "access_log", "error_log", "pid_file", "temp_dir", "js_module")
_NOT_FILES = ("stderr", "syslog:")


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway listens, where Triton is, and what it enforces besides the tenants' limits."""

    triton_grpc: str  # host:port of Triton's gRPC
    triton_http: str  # host:port of Triton's HTTP
    triton_api_key: str = ""  # Triton's own key (its restricted protocols), sent upstream; "" when it has none
    grpc_listen: str = "0.0.0.0:9001"
    http_listen: str = "0.0.0.0:9000"
    tls_cert: str = ""  # PEM certificate (chain) and key: both or neither; with them both ports speak TLS only
    tls_key: str = ""
    max_body_mb: int = 32  # a larger request body is refused at the gateway (413 / INVALID_ARGUMENT)
    streams_retry_after_s: int = 30  # a tenant's streams all open: when to retry (about one video's time)
    access_log: str = "/dev/stdout"
    metrics_address: str = ""  # host:port of mtail's UDP syslog input ("" : no per-tenant metrics)
    error_log: str = "stderr"
    pid_file: str = "/tmp/i2v-gateway-nginx.pid"
    temp_dir: str = "/tmp/i2v-gateway"
    js_module: str = JS_MODULE

    def absolute(self) -> GatewaySettings:
        """These settings with their relative paths made absolute against the current folder: nginx would read
        them against its prefix (`nginx -p`, the rendered folder), not where they were given."""
        given = {name: getattr(self, name) for name in PATH_FIELDS}
        return dataclasses.replace(self, **{name: os.path.abspath(p) for name, p in given.items() if _is_relative(p)})

    def check(self) -> GatewaySettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both a certificate and its key (tls_cert and tls_key)")
        if self.triton_api_key and not _SAFE_KEY.match(self.triton_api_key):
            raise ValueError("triton_api_key must be 1-256 characters of letters, digits and _.~+/=-")
        addresses = ("triton_grpc", "triton_http", "grpc_listen", "http_listen")
        for name in addresses + (("metrics_address",) if self.metrics_address else ()):
            if not re.match(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$", getattr(self, name)):
                raise ValueError(f"{name} must be host:port, got {getattr(self, name)!r}")
        for name in PATH_FIELDS:
            if re.search(r"[\s;{}'\"]", getattr(self, name)):
                raise ValueError(f"{name} must be a path without spaces, quotes, braces or ';'")
            if _is_relative(getattr(self, name)):
                raise ValueError(
                    f"{name} must be an absolute path (nginx reads a relative one against its prefix), "
                    f"got {getattr(self, name)!r}: see GatewaySettings.absolute()"
                )
        if not 1 <= self.max_body_mb <= 4096:
            raise ValueError(f"max_body_mb must be from 1 to 4096, got {self.max_body_mb}")
        if not 1 <= self.streams_retry_after_s <= 86_400:
            raise ValueError(f"streams_retry_after_s must be from 1 to 86400, got {self.streams_retry_after_s}")
        return self


def _is_relative(path: str) -> bool:
    """A file path that nginx would read against its prefix (not empty, not a log target)."""
    return bool(path) and not path.startswith(_NOT_FILES) and not os.path.isabs(path)


def render(tenants: list[Tenant], settings: GatewaySettings) -> str:
    """The configuration text; every placeholder of the template is filled or rendering fails."""
    settings.check()
    check_tenants(tenants)
    template = resources.files("i2v.gateway").joinpath("nginx.conf.template").read_text()
    tls = ""
    if settings.tls_cert:
        tls = (
            f"        ssl_certificate {settings.tls_cert};\n"
            f"        ssl_certificate_key {settings.tls_key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;"
        )
    indent = " " * 8
    values = {
        "JS_MODULE": settings.js_module,
        "PID_FILE": settings.pid_file,
        "ERROR_LOG": settings.error_log,
        "ACCESS_LOG": settings.access_log,
        "TEMP_DIR": settings.temp_dir,
        "MAX_BODY": str(settings.max_body_mb * 1024 * 1024),
        "TRITON_GRPC": settings.triton_grpc,
        "TRITON_HTTP": settings.triton_http,
        "TRITON_KEY": settings.triton_api_key,
        "TENANT_HEADER": TENANT_HEADER,  # what Triton forwards to the models (--*-header-forward-pattern)
        "MODELS_HEADER": MODELS_HEADER,
        "FORBIDDEN": FORBIDDEN,  # the words its refusals start with, which the client tells them by
        "UNAVAILABLE": UNAVAILABLE,
        "RATE_LIMITED": RATE_LIMITED,
        "STREAMS_LIMITED": STREAMS_LIMITED,
        "RETRY_AFTER": RETRY_AFTER,
        **KEY_HEADERS,
        "LOG_FIELDS": LOG_FIELDS,
        "METRICS_LOG": (
            f"    access_log syslog:server={settings.metrics_address},nohostname,tag=i2v_gateway tenants_line;"
            if settings.metrics_address
            else "    # no per-tenant metrics (i2v gateway render --metrics-address)"
        ),
        "GRPC_LISTEN": settings.grpc_listen,
        "HTTP_LISTEN": settings.http_listen,
        "SSL": " ssl" if settings.tls_cert else "",
        "TLS": tls,
        "TENANT_KEYS": "\n".join(f'{indent}"{t.key_sha256}" {t.name};' for t in tenants),
        "TENANT_MODELS": "\n".join(f'{indent}"{t.name}/{m}" 1;' for t in tenants for m in t.allowed_models),
        "TENANT_MODEL_LISTS": "\n".join(f'{indent}{t.name} "{",".join(t.allowed_models)}";' for t in tenants),
        "STREAMS_RETRY": str(settings.streams_retry_after_s),
        "TENANT_RETRY": "\n".join(f"{indent}{t.name} {t.retry_after_s};" for t in tenants),
        "TENANT_LIMITS": "\n".join(
            f'{indent}{t.name} "{t.requests_per_minute} requests per minute (burst {t.burst}) and '
            f'{t.max_streams} concurrent streams";'
            for t in tenants
        ),
        "TENANT_ZONES": "\n".join(_zones(t) for t in tenants),
        # every inference location: the tenant's rate; the generations' locations also: its streams
        "TENANT_RATE_RULES": "\n".join(
            f"{' ' * 12}limit_req zone=rate_{t.name}{f' burst={t.burst}' if t.burst else ''} nodelay;" for t in tenants
        ),
        "TENANT_STREAMS_RULES": "\n".join(f"{' ' * 12}limit_conn streams_{t.name} {t.max_streams};" for t in tenants),
    }
    text = _PLACEHOLDER.sub(lambda m: values[m.group(0).strip("@")], template)
    return text


def _zones(tenant: Tenant) -> str:
    name = tenant.name
    return (
        f'    map $tenant $limit_key_{name} {{\n        {name} "{name}";\n        default "";\n    }}\n'
        f"    limit_req_zone $limit_key_{name} zone=rate_{name}:1m rate={tenant.requests_per_minute}r/m;\n"
        f"    limit_conn_zone $limit_key_{name} zone=streams_{name}:1m;"
    )


def write_config(tenants: list[Tenant], settings: GatewaySettings, folder: Path) -> Path:
    """Write nginx.conf (0600), the key-hashing script and mtail's program into `folder` (0700); returns the
    configuration."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    config = folder / CONFIG_NAME
    fd = os.open(config.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render(tenants, settings))
    os.replace(config.with_suffix(".tmp"), config)  # a reload never reads half a file
    for name in (SCRIPT_NAME, METRICS_PROGRAM):
        text = resources.files("i2v.gateway").joinpath(name).read_text()
        (folder / name).write_text(_PLACEHOLDER.sub(lambda m: KEY_HEADERS[m.group(0).strip("@")], text))
    return config
