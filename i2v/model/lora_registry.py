"""Where registered LoRA adapters live: adding, listing and removing them.

The registry is a folder of `<name>.safetensors` files, each with `<name>.json` describing it (ranks, layers,
targets, size: written by `i2v lora add` after its check, listed by the `i2vgen_xl_loras` model without torch):
`<model repository>/i2vgen_xl/loras/` by default (it travels with the repository on the compose and Kubernetes
volumes), or the folder `I2V_LORA_DIR` names (a separate mount).
The server reads it on every request, so adding or removing an adapter needs no restart. `i2v lora add` copies a
file in after checking it against the served UNet's layers (`i2v.model.lora_layer_map`); each file is written
aside and renamed into place, so a server never reads half a file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from i2v.model.lora_layer_map import graph_layers, target_shapes, unet_version_folder
from i2v.model.repository_layout import part_runtime
from i2v.params import MODEL_NAME, parameter

if TYPE_CHECKING:  # the listing model reads the registry without torch; `add` imports the reader when it runs
    from i2v.model.lora import LoraAdapter

LORA_DIR_ENV = "I2V_LORA_DIR"
LORA_FOLDER = "loras"
LORA_SUFFIX = ".safetensors"
INFO_SUFFIX = ".json"  # beside each adapter: what `describe` lists
DESCRIPTION_FIELDS = ("ranks", "layers", "target_modules", "size_bytes")  # of that file, besides the name
MAX_NAME_CHARS = parameter("lora").max_length  # a request's `lora` names an adapter: as long as it may be
NAME_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_CHARS - 1}}}$")
ADD_COMMAND = "i2v lora add NAME FILE.safetensors"  # what the messages about an empty registry suggest


class LoraRegistryError(ValueError):
    """A registry operation that cannot be done (bad or unknown name, a name already taken)."""


def lora_dir(repository: str | Path) -> Path:
    """The registry folder of a model repository: `I2V_LORA_DIR` when set, else `<repository>/i2vgen_xl/loras`:
    inside the BLS model's folder, where Triton ignores a non-numeric folder (at the repository's top level it
    would be polled as a model, and the server would not start)."""
    override = os.environ.get(LORA_DIR_ENV)
    return Path(override) if override else Path(repository) / MODEL_NAME / LORA_FOLDER


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or "") or name.endswith(LORA_SUFFIX):
        raise LoraRegistryError(
            f"LoRA name {name!r} is not allowed: use 1-{MAX_NAME_CHARS} letters, digits, '_', '-' or '.', starting "
            "with a letter or digit"
        )
    return name


def registered(folder: Path) -> dict[str, Path]:
    """Registered adapters by name (files being written, hidden, are not yet registered)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {
        p.name.removesuffix(LORA_SUFFIX): p
        for p in sorted(folder.iterdir())
        if p.name.endswith(LORA_SUFFIX) and not p.name.startswith(".") and p.is_file()
    }


def resolve(folder: Path, name: str) -> Path:
    """The file of a registered adapter; an unknown name is a `LoraRegistryError` listing the registered ones."""
    adapters = registered(folder)
    if name not in adapters:
        if not adapters:
            raise LoraRegistryError(f"lora {name!r} is not registered; no LoRA adapters are (add one: {ADD_COMMAND})")
        raise LoraRegistryError(f"lora {name!r} is not registered; registered: {', '.join(adapters)}")
    return adapters[name]


def rank_text(ranks: Sequence[int]) -> str:
    """ "4", "2-6" where the layers' ranks differ, "?" where none are known (a file not described by `add`)."""
    if not ranks:
        return "?"
    low, high = min(ranks), max(ranks)
    return str(low) if low == high else f"{low}-{high}"


def file_version(path: Path) -> str:
    """Changes when the file is replaced (a new file under the same name): the key servers cache it under."""
    stat = Path(path).stat()
    return f"{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}"


def add(repository: Path, name: str, source: Path) -> tuple[Path, LoraAdapter]:
    """Check `source` against the served UNet and register it as `name`; nothing registered is touched when
    it is refused. Raises `LoraFileError` or `LoraRegistryError`."""
    from i2v.model.lora import read_lora

    check_name(name)
    folder = lora_dir(repository)
    if name in registered(folder):
        raise LoraRegistryError(f"lora {name!r} is already registered: remove it first (i2v lora remove {name})")
    adapter = read_lora(source)
    version = unet_version_folder(repository)
    targets = target_shapes(version)
    runtime = part_runtime(version)
    left_out = graph_layers(version) - set(targets) if set(adapter.layers) - set(targets) else set()
    adapter.check_fits(targets, left_out, runtime)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoraRegistryError(f"cannot create the registry folder {folder}: {exc.strerror or exc}") from None
    info = {
        "name": name,
        "ranks": adapter.ranks,
        "layers": len(adapter.layers),
        "target_modules": adapter.target_modules,
        "size_bytes": adapter.size_bytes,
    }
    _write_aside(folder, name, folder / f"{name}{INFO_SUFFIX}", lambda path: path.write_text(json.dumps(info) + "\n"))
    _write_aside(folder, name, folder / f"{name}{LORA_SUFFIX}", lambda path: shutil.copyfile(source, path))
    return folder / f"{name}{LORA_SUFFIX}", adapter


def _write_aside(folder: Path, name: str, target: Path, write) -> None:
    """Write a file under a hidden name, then rename it into place: a reader sees all of it or none."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{name}-", suffix=".partial", dir=folder)
    except OSError as exc:  # a read-only mount (Triton's own), a full disk
        raise LoraRegistryError(f"cannot write into the registry folder {folder}: {exc.strerror or exc}") from None
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, target)
    except OSError as exc:
        raise LoraRegistryError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def describe(folder: Path) -> list[dict]:
    """Every registered adapter as `add` described it (name, ranks, layers, target_modules, size_bytes); a file
    put in by hand, without a description, is listed with its size only and `"checked": false`."""
    entries = []
    for name, path in registered(folder).items():
        info_path = path.with_name(f"{name}{INFO_SUFFIX}")
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = None
        if _is_description(info):
            entries.append({**{k: info[k] for k in DESCRIPTION_FIELDS}, "name": name, "checked": True})
        else:  # put in by hand, or its description damaged: listed, unchecked
            entries.append({"name": name, "size_bytes": path.stat().st_size, "checked": False})
    return entries


def _is_description(info: object) -> bool:
    """What `add` writes: {ranks: [int], layers: int, target_modules: [str], size_bytes: int}."""

    def integer(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    return (
        isinstance(info, dict)
        and all(field in info for field in DESCRIPTION_FIELDS)
        and isinstance(info["ranks"], list)
        and all(integer(r) for r in info["ranks"])
        and integer(info["layers"])
        and integer(info["size_bytes"])
        and isinstance(info["target_modules"], list)
        and all(isinstance(m, str) for m in info["target_modules"])
    )


def remove(repository: Path, name: str) -> None:
    """Unregister `name`: new requests cannot use it; a request already using it finishes with its weights
    (the servers keep what they loaded). A registry inside the repository (no `I2V_LORA_DIR`) needs the
    repository: without it, that is what the error says, as `add`'s does."""
    check_name(name)
    if not os.environ.get(LORA_DIR_ENV):
        unet_version_folder(repository)
    path = resolve(lora_dir(repository), name)
    try:
        path.unlink()
        path.with_name(f"{name}{INFO_SUFFIX}").unlink(missing_ok=True)
    except OSError as exc:
        raise LoraRegistryError(f"cannot remove {path}: {exc.strerror or exc}") from None


__all__ = ["LoraRegistryError", "add", "describe", "lora_dir", "registered", "remove", "resolve"]
