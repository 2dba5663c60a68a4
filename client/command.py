"""`i2v generate` and `i2v models`: the client's commands, and the options every client-side command shares.

The generation flags are made from the parameter table (`i2v.params`): a parameter added there is a flag here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from i2v.arguments import (
    API_KEY_ENV,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_OUT_OF_MEMORY,
    EXIT_OVERLOADED,
    EXIT_RATE_LIMITED,
    EXIT_TIMEOUT,
    EXIT_UNAUTHORIZED,
    EXIT_UNAVAILABLE,
    add_api_key_argument,
    positive,
)
from i2v.endpoints import GRPC_URL
from i2v.model.lora_registry import ADD_COMMAND
from i2v.params import IMAGE_FORMATS_TEXT, INVALID_INPUT, TOTAL_STAGE, parameters
from i2v.video import metadata_path

URL_ENV = "I2V_TRITON_URL"
CA_FILE_ENV = "I2V_CA_FILE"

METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_connection_args(parser: argparse.ArgumentParser, *, timeout: bool = True) -> None:
    """Where the server is (`--url`, env I2V_TRITON_URL), its key (`--api-key`) and, for requests, `--timeout`."""
    parser.add_argument("--url", default=os.environ.get(URL_ENV, GRPC_URL), help=f"Triton gRPC address (env {URL_ENV})")
    add_api_key_argument(parser, "key for a server that restricts inference and model control, or a gateway's key")
    parser.add_argument("--tls", action="store_true", help="speak TLS (a gateway's public port)")
    parser.add_argument(
        "--ca-file",
        default=os.environ.get(CA_FILE_ENV),
        help=f"PEM file of the CA that signed the gateway's certificate; implies --tls (env {CA_FILE_ENV})",
    )
    if timeout:
        parser.add_argument(
            "--timeout",
            type=positive("seconds"),
            default=None,
            metavar="SECONDS",
            help="seconds before the request is cancelled (more than 0)",
        )


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    """One flag per parameter of the table; omitted ones take the served model's defaults (reported back in
    the metadata JSON)."""
    group = parser.add_argument_group("generation (default: the served model's own)")
    for entry in parameters():
        if entry.cli_flag is None:
            continue
        allowed = entry.describe_range()
        options: dict = {
            "dest": entry.name,
            "default": None,
            "help": f"{entry.help} ({allowed})" if allowed else entry.help,
        }
        if entry.type is bool:
            options.update(action="store_const", const=True)
        else:
            options.update(type=entry.type, choices=entry.choices, metavar=METAVARS[entry.type])
        group.add_argument(entry.cli_flag, **options)


def generation_values(args: argparse.Namespace) -> dict:
    """The parameters given on the command line, by name."""
    return {p.name: getattr(args, p.name) for p in parameters() if getattr(args, p.name, None) is not None}


def add_client_commands(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add `generate` and `models` to the `i2v` parser."""
    generate = commands.add_parser(
        "generate",
        formatter_class=formatter_class,
        help="generate a video (or a batch: a folder of images or a JSONL of requests) through gRPC",
    )
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help=f"{IMAGE_FORMATS_TEXT} picture")
    source.add_argument(
        "--batch", type=Path, help='a folder of images (all with --prompt), or a JSONL file of {"image", "prompt", ...}'
    )
    generate.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("outputs/video.mp4"),
        help=f"MP4 to write (single image); its metadata goes beside it as {metadata_path('NAME.mp4')}",
    )
    generate.add_argument(
        "--output-dir", type=Path, default=Path("outputs/batch"), help="folder for a batch's videos and manifest.json"
    )
    add_connection_args(generate)
    add_generation_args(generate)
    generate.set_defaults(run=run_generate)

    models = commands.add_parser(
        "models", help="list, load or unload models on a running server", formatter_class=formatter_class
    )
    # One parser per action, so the names may come before or after the options (`load --url X unet`)
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, nargs, what in (
        ("list", "*", "show each model's state and version (only these models, if named); changes nothing"),
        ("load", "+", "load these models (also picks up their new versions)"),
        ("unload", "+", "unload these models"),
    ):
        command = actions.add_parser(action, help=what, description=what, formatter_class=formatter_class)
        command.add_argument("names", nargs=nargs, metavar="NAME", help="model names, as `list` shows them")
        add_connection_args(command, timeout=False)
        command.set_defaults(run=run_models)


def run_generate(args: argparse.Namespace) -> int:
    from i2v.client.errors import I2VError, InvalidInputError

    try:
        if args.batch is not None:
            return run_batch(args)
        if not args.prompt:
            raise InvalidInputError("--prompt is required with --image")
        result = generate_with_progress(prepared_request(args), args, args.url)
    except I2VError as exc:
        return fail_request(exc, args)
    except KeyboardInterrupt:
        return fail("cancelled (Ctrl-C): the server stops the request at its next step", EXIT_CANCELLED)
    except ValueError as exc:  # a batch's input
        return fail(f"{INVALID_INPUT}: {exc}", EXIT_INVALID)
    except OSError as exc:  # an input that cannot be read, a batch's folder
        return fail(f"{INVALID_INPUT}: {exc.filename or args.batch}: {exc.strerror or exc}", EXIT_INVALID)
    except OutputError as exc:
        return fail(str(exc), EXIT_FAILED)
    print(f"wrote {args.output} (seed {result.seed}, {result.timings[TOTAL_STAGE]:.2f} s on the server)")
    return EXIT_OK


def run_batch(args: argparse.Namespace) -> int:
    """One video per item, a progress bar over the items, a manifest; exit 1 if any item failed."""
    from tqdm import tqdm

    from i2v.client import batch
    from i2v.client.grpc_client import I2VClient

    params = generation_values(args)
    if args.batch.is_dir():
        if not args.prompt:
            raise ValueError("--prompt is required with a folder of images")
        items = batch.items_from_folder(args.batch, params)
    elif args.batch.is_file():
        items = batch.items_from_jsonl(args.batch, params)
    else:
        raise ValueError(f"batch input not found: {args.batch}")
    check_writable(args.output_dir / batch.MANIFEST, "--output-dir")
    failed = 0
    with I2VClient(args.url, timeout_s=args.timeout, **connection_settings(args)) as client:
        client.wait_until_ready()
        with tqdm(total=len(items), desc="videos", unit="video") as bar:
            for record in batch.run_batch(client, items, args.output_dir):
                if record["status"] != "ok":
                    failed += 1
                    tqdm.write(f"failed: {record['name']}: {record['error']}", file=sys.stderr)
                bar.update()
    print(
        f"{len(items) - failed} of {len(items)} videos written to {args.output_dir}; "
        f"manifest: {args.output_dir / batch.MANIFEST}"
    )
    return EXIT_FAILED if failed else EXIT_OK


def prepared_request(args: argparse.Namespace):
    """The command line's request, checked, and its output writable: a mistake in either fails at once, whether
    the server is up or not, and never after minutes of generation (or, for `i2v demo`, of export)."""
    from i2v.client.types import GenerationRequest

    request = GenerationRequest.from_file(args.image, **generation_values(args)).validate()
    check_writable(args.output, "-o")
    return request


def generate_with_progress(request, args: argparse.Namespace, url: str):
    """Send one request (`prepared_request`), draw a progress bar from the streamed steps, save MP4 + metadata."""
    from tqdm import tqdm

    from i2v.client.grpc_client import I2VClient

    with I2VClient(url, timeout_s=getattr(args, "timeout", None), **connection_settings(args)) as client:
        client.wait_until_ready()
        request.validate(client.size_step())  # the served model's size step: refused here, before any work
        bars: list[tqdm] = []  # drawn at the first step: a request refused before any (a bad image) draws none

        def on_progress(step: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(total=total, desc="denoising", unit="step"))
            bars[0].total = total
            bars[0].update(step - bars[0].n)

        try:
            result = client.generate(request, on_progress=on_progress)
        finally:
            for bar in bars:
                bar.close()
    save_video(result, args.output)
    return result


class OutputError(Exception):
    """The video could not be written where asked (the message says where it was kept instead)."""


def check_writable(path: Path, option: str) -> None:
    """Refuse an output that cannot be written, before generating: its folder is made (as saving would) and a
    file is tried in it. Raises `InvalidInputError` naming the option."""
    from i2v.client.errors import InvalidInputError

    if path.is_dir():
        raise InvalidInputError(f"{option} {path} is a folder: name the file to write")
    blocking = next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:
        raise InvalidInputError(f"{option} {path} cannot be written: {blocking} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"cannot make {exc.filename or path.parent}: {exc.strerror or exc}"
        raise InvalidInputError(f"{option} {path} cannot be written: {reason}") from None
    try:
        with tempfile.TemporaryFile(dir=path.parent):  # its own name in an error would mean nothing to the user
            pass
    except OSError as exc:
        raise InvalidInputError(f"{option} {path} cannot be written: {path.parent}: {exc.strerror or exc}") from None


def save_video(result, path: Path) -> None:
    """`result.save(path)`; where that fails, the video goes to a temporary file, so minutes of work are kept."""
    try:
        result.save(path)
    except OSError as exc:
        fd, kept = tempfile.mkstemp(prefix="i2v-", suffix=".mp4")
        os.close(fd)
        result.save(kept)
        raise OutputError(
            f"cannot write {path}: {exc.filename or path}: {exc.strerror or exc}; the video was saved to {kept} "
            "(and its metadata beside it)"
        ) from exc


def run_models(args: argparse.Namespace) -> int:
    """`list` shows states (of the named models, or all) and changes nothing; `load`/`unload` act on names, each
    of which must be in the server's model repository."""
    from i2v.client.errors import I2VError
    from i2v.client.model_control import UNLOAD_WAIT_S, ModelControl

    try:
        with ModelControl(args.url, **connection_settings(args)) as control:
            models = control.list()
            unknown = sorted(set(args.names) - {m.name for m in models})
            if unknown:
                return fail(f"not in the model repository: {', '.join(unknown)}", EXIT_INVALID)
            if args.action == "list":
                for model in models:
                    if not args.names or model.name in args.names:
                        reason = f"  ({model.reason})" if model.reason else ""
                        print(f"{model.name:<16} {model.version or '-':>3}  {model.state}{reason}")
                return EXIT_OK
            for name in args.names:
                if args.action == "load":
                    control.load(name)
                    print(f"loaded {name}")
                elif control.unload(name):
                    print(f"unloaded {name}")
                else:
                    print(f"{name} still unloading after {UNLOAD_WAIT_S:g} s: `i2v models list {name}` tells when done")
    except I2VError as exc:
        return fail_request(exc, args)
    return EXIT_OK


def connection_settings(args: argparse.Namespace) -> dict:
    """The key and TLS options of `add_connection_args`, as the clients take them."""
    return {
        "api_key": getattr(args, "api_key", None),
        "tls": getattr(args, "tls", False),
        "ca_file": getattr(args, "ca_file", None),
    }


def fail_request(exc: Exception, args: argparse.Namespace) -> int:
    """Say what went wrong with a request to the server, in words the user can act on, and return the exit
    code that means it (the first row of `failures` that matches)."""
    from i2v.client import errors

    url, key, timeout = args.url, getattr(args, "api_key", None), getattr(args, "timeout", None)
    if isinstance(exc, errors.UnauthorizedError) and not isinstance(exc, errors.ForbiddenError):
        if key:
            message = f"the server at {url} refused the API key sent: check --api-key (or {API_KEY_ENV})"
        else:
            message = f"the server at {url} needs an API key: pass it with --api-key KEY or the {API_KEY_ENV} variable"
        return fail(f"{message} ({exc})", EXIT_UNAUTHORIZED)
    if isinstance(exc, errors.GenerationTimeoutError):
        took = f"longer than --timeout {timeout:g} s" if timeout else "too long"
        return fail(f"the request took {took} and was cancelled; allow it more with --timeout ({exc})", EXIT_TIMEOUT)
    # (kind, what the message is prefixed with unless its first clause already says so, exit code)
    failures = (
        (errors.InvalidInputError, INVALID_INPUT, EXIT_INVALID),  # the server's own start with it
        (errors.ConnectionSettingsError, "", EXIT_INVALID),
        (errors.ServerUnavailableError, "", EXIT_UNAVAILABLE),  # its messages start "cannot connect", ...
        (errors.OverloadedError, "server overloaded", EXIT_OVERLOADED),
        (errors.RateLimitedError, "", EXIT_RATE_LIMITED),
        (errors.ForbiddenError, "", EXIT_UNAUTHORIZED),
        (errors.GenerationCancelledError, "cancelled", EXIT_CANCELLED),
        (errors.OutOfMemoryError, "", EXIT_OUT_OF_MEMORY),
        (Exception, "failed", EXIT_FAILED),
    )
    label, code = next((label, code) for kind, label, code in failures if isinstance(exc, kind))
    message = str(exc)
    if label and label not in message.split(":")[0].lower():
        message = f"{label}: {message}"
    return fail(message, code)


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def add_lora_list_command(lora_actions, formatter_class: type[argparse.HelpFormatter]) -> None:
    """`i2v lora list`, beside `add` and `remove` (`i2v.serving.lora_command`): it asks the server."""
    listing = lora_actions.add_parser(
        "list", formatter_class=formatter_class, help="the server's adapters: name, rank, layers, targets, size"
    )
    add_connection_args(listing, timeout=False)
    listing.set_defaults(run=run_lora_list)


def run_lora_list(args: argparse.Namespace) -> int:
    from i2v.client import I2VClient, I2VError

    try:
        with I2VClient(args.url, **connection_settings(args)) as client:
            adapters = client.lora_adapters()
    except I2VError as exc:
        return fail_request(exc, args)
    if not adapters:
        print(f"no LoRA adapters registered on {args.url}; add one with `{ADD_COMMAND}`")
    for adapter in adapters:
        size = f"{adapter.size_bytes / 1e6:8.2f} MB"
        if not adapter.checked:
            print(f"{adapter.name:<24} {'rank ?':<11} {size}  (copied in by hand, unchecked: use i2v lora add)")
            continue
        targets = ", ".join(adapter.target_modules)
        print(f"{adapter.name:<24} rank {adapter.rank_text:<6} {size}  {adapter.layers} layers: {targets}")
    return EXIT_OK
