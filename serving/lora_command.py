"""`i2v lora add|remove`: the LoRA adapters a server offers, managed where its model repository is.

The registry is a folder the server reads per request (`i2v.model.lora_registry`), so the commands act on files
and the running server picks the change up at its next request: run them where the repository is mounted
writable (Triton's own mount is read-only): compose's `lora` service, Kubernetes' `lora-admin.yaml` pod.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i2v.arguments import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from i2v.model.info import DEFAULT_REPOSITORY


def add_lora_command(commands, formatter_class: type[argparse.HelpFormatter]):
    """`i2v lora add|remove`; returns the action group, where the client adds `list` (it asks the server)."""
    lora = commands.add_parser(
        "lora",
        formatter_class=formatter_class,
        help="register, list or remove LoRA adapters of the served UNet (no restart needed)",
        description="LoRA adapters live in <model repository>/i2vgen_xl/loras/ (or $I2V_LORA_DIR); a request picks one "
        "with `lora` and `lora_scale` (i2v generate --lora NAME --lora-scale 0.8).",
    )
    actions = lora.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", formatter_class=formatter_class, help="check a LoRA file and register it")
    add.add_argument("name", help="the name requests use (letters, digits, _ - .)")
    add.add_argument("file", type=Path, help="diffusers LoRA safetensors for the UNet")
    remove = actions.add_parser("remove", formatter_class=formatter_class, help="unregister an adapter")
    remove.add_argument("name", help="the registered adapter to remove (i2v lora list names them)")
    for parser in (add, remove):
        parser.add_argument(
            "--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="the served model repository"
        )
    lora.set_defaults(run=run_lora)
    return actions


def run_lora(args: argparse.Namespace) -> int:
    from i2v.model import lora_registry
    from i2v.model.lora import LoraFileError
    from i2v.model.lora_layer_map import LoraLayerMapError

    repository = args.model_repository
    try:
        if args.action == "add":
            path, adapter = lora_registry.add(repository, args.name, args.file)
            print(
                f"registered {args.name}: rank {lora_registry.rank_text(adapter.ranks)}, {len(adapter.layers)} layers "
                f"({', '.join(adapter.target_modules)}), {adapter.size_bytes / 1e6:.2f} MB at {path}"
            )
        else:
            lora_registry.remove(repository, args.name)
            print(f"removed {args.name}")
    except (LoraFileError, lora_registry.LoraRegistryError, LoraLayerMapError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:  # the registry folder not a folder, unreadable
        print(f"error: {exc.filename or repository}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
