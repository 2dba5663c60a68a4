"""`i2v gateway`: manage the tenants file and render nginx's configuration from it.

    i2v gateway add-tenant --tenants tenants.json alice --requests-per-minute 30   # prints alice's key, once
    i2v gateway remove-tenant --tenants tenants.json alice
    i2v gateway render --tenants tenants.json --output /etc/i2v-gateway --triton-grpc triton:8001 ...

After a change, render again and reload nginx (`nginx -s reload`, or SIGHUP): streams in flight finish.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from i2v.arguments import EXIT_INVALID, EXIT_OK, add_api_key_argument
from i2v.endpoints import GRPC_PORT, HTTP_PORT, LOOPBACK
from i2v.gateway.nginx_config import GatewaySettings
from i2v.gateway.tenants import Tenant


def add_gateway_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    gateway = commands.add_parser(
        "gateway", formatter_class=formatter_class, help="tenants, keys and the nginx gateway in front of Triton"
    )
    actions = gateway.add_subparsers(required=True, metavar="ACTION")

    add = actions.add_parser("add-tenant", formatter_class=formatter_class, help="add a tenant; prints its new key")
    add.add_argument("name", help="lower case, digits and _ (also in nginx's zone names)")
    add.add_argument("--tenants", type=Path, required=True, help="tenants file (JSON; created if absent)")
    add.add_argument(
        "--requests-per-minute", type=int, default=Tenant.requests_per_minute, help="generations per minute"
    )
    add.add_argument("--burst", type=int, default=Tenant.burst, help="requests over the rate accepted at once")
    add.add_argument("--max-streams", type=int, default=Tenant.max_streams, help="generations in flight at once")
    add.add_argument(
        "--models",
        nargs="+",
        default=list(Tenant.models),
        help="models the tenant may use (with i2vgen_xl: its LoRA list)",
    )
    add.set_defaults(run=run_add_tenant)

    remove = actions.add_parser("remove-tenant", formatter_class=formatter_class, help="revoke a tenant's key")
    remove.add_argument("name", help="the tenant to remove (its key works until the gateway is rendered and reloaded)")
    remove.add_argument("--tenants", type=Path, required=True, help="tenants file")
    remove.set_defaults(run=run_remove_tenant)

    render = actions.add_parser(
        "render",
        formatter_class=formatter_class,
        help="write nginx.conf (0600), its key script and the metrics program into a folder",
    )
    render.add_argument("--tenants", type=Path, required=True, help="tenants file")
    render.add_argument("--output", type=Path, required=True, help="folder for nginx.conf and tenant_key.js")
    render.add_argument("--triton-grpc", default=f"{LOOPBACK}:{GRPC_PORT}", help="Triton's gRPC address")
    render.add_argument("--triton-http", default=f"{LOOPBACK}:{HTTP_PORT}", help="Triton's HTTP address")
    add_api_key_argument(render, "Triton's own key, sent upstream by the gateway (never to tenants)")
    render.add_argument("--grpc-listen", default=GatewaySettings.grpc_listen, help="the gateway's gRPC port")
    render.add_argument("--http-listen", default=GatewaySettings.http_listen, help="the gateway's HTTP port")
    render.add_argument(
        "--tls-cert",
        default="",
        help="PEM certificate: both ports then speak TLS only (render checks it can read it; a relative path is "
        "made absolute, as are the other paths)",
    )
    render.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    render.add_argument(
        "--max-body-mb", type=int, default=GatewaySettings.max_body_mb, help="larger request bodies are refused"
    )
    render.add_argument(
        "--streams-retry-after",
        type=int,
        default=GatewaySettings.streams_retry_after_s,
        help="seconds a tenant whose streams are all open is told to wait (Retry-After): about one video's time",
    )
    render.add_argument(
        "--access-log", default=GatewaySettings.access_log, help="JSON lines per request, with the tenant"
    )
    render.add_argument(
        "--metrics-address",
        default="",
        help="host:port where mtail listens (UDP) for the access log and serves per-tenant metrics; '' for none",
    )
    render.add_argument("--pid-file", default=GatewaySettings.pid_file, help="nginx's pid file")
    render.add_argument(
        "--temp-dir",
        default=GatewaySettings.temp_dir,
        help="where nginx keeps request bodies; it must exist where nginx runs (render makes it here)",
    )
    render.set_defaults(run=run_render)


def run_add_tenant(args: argparse.Namespace) -> int:
    from i2v.gateway.tenants import TenantsFileError, add_tenant

    try:
        key = add_tenant(
            args.tenants,
            args.name,
            requests_per_minute=args.requests_per_minute,
            burst=args.burst,
            max_streams=args.max_streams,
            models=tuple(args.models),
        )
    except TenantsFileError as exc:
        return _fail(str(exc))
    print(f"added tenant {args.name} to {args.tenants}; its key (shown once, only its hash is stored):")
    print(key)
    print("render the gateway's configuration again and reload nginx for it to take effect", file=sys.stderr)
    return EXIT_OK


def run_remove_tenant(args: argparse.Namespace) -> int:
    from i2v.gateway.tenants import TenantsFileError, remove_tenant

    try:
        remove_tenant(args.tenants, args.name)
    except TenantsFileError as exc:
        return _fail(str(exc))
    print(f"removed tenant {args.name}; render again and reload nginx for it to take effect")
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    from i2v.gateway.nginx_config import write_config
    from i2v.gateway.tenants import TenantsFileError, load_tenants

    try:
        settings = GatewaySettings(
            triton_grpc=args.triton_grpc,
            triton_http=args.triton_http,
            triton_api_key=args.api_key or "",
            grpc_listen=args.grpc_listen,
            http_listen=args.http_listen,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            max_body_mb=args.max_body_mb,
            streams_retry_after_s=args.streams_retry_after,
            access_log=args.access_log,
            metrics_address=args.metrics_address,
            pid_file=args.pid_file,
            temp_dir=args.temp_dir,
        ).absolute()  # nginx reads a relative path against its prefix (-p), not this folder
        settings.check()
        _check_tls_files(args, settings)
        config = write_config(load_tenants(args.tenants), settings, args.output)
        with contextlib.suppress(OSError):  # nginx may run elsewhere (another container, whose image makes it)
            Path(settings.temp_dir).mkdir(parents=True, exist_ok=True)
    except (TenantsFileError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # the output folder: a file, unwritable
        return _fail(f"cannot write the gateway's configuration into {args.output}: {exc.strerror or exc}")
    print(
        f"wrote {config}: run `nginx -p {config.parent.absolute()} -c {config.absolute()}`, or reload the running nginx"
    )
    return EXIT_OK


def _check_tls_files(args: argparse.Namespace, settings: GatewaySettings) -> None:
    """Refuse a certificate or key render cannot read, which nginx would refuse at start; one in a folder absent
    here is left to nginx where it runs (compose and Kubernetes mount the TLS folder in nginx's container only)."""
    for flag, given, path in (
        ("--tls-cert", args.tls_cert, settings.tls_cert),
        ("--tls-key", args.tls_key, settings.tls_key),
    ):
        if not path:
            continue
        if os.path.isabs(given) and not os.path.lexists(os.path.dirname(path)):
            print(f"note: {flag} {given} is not on this machine: nginx must find it where it runs", file=sys.stderr)
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{flag} {given}: cannot read {path}: {exc.strerror or exc}") from exc


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID
