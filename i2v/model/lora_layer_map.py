"""What the served UNet lets a LoRA adapter change: the layer map the export writes beside the UNet part
(`lora_targets.json`: each adaptable layer's weight shape and, for the graph runtimes, the graph weights that
hold it), read by `i2v lora add` to check an adapter and by the servers to apply one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from i2v.model.repository_layout import GRAPH_FILE, LORA_TARGETS_FILE, served_version_dir

if TYPE_CHECKING:
    from i2v.model.lora import Targets

# The torch exporter's node metadata: the module path of every enclosing module, and each one's class.
SCOPES_KEY, CLASSES_KEY = "pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy"
UNET_SCOPE = "unet."  # the exported part module (`i2v.model.modules.UNetPart`) holds the UNet as `unet`
UNET_MODEL = "unet"


class LoraLayerMapError(ValueError):
    """The export's layer map is there but unreadable: the repository needs exporting again."""


def unet_version_folder(repository: Path) -> Path:
    """The UNet part's served version folder (the highest number)."""
    if not Path(repository).is_dir():
        raise FileNotFoundError(f"no model repository at {repository} (no such folder): export the model first")
    version = served_version_dir(repository, UNET_MODEL)
    if version is None:
        model = Path(repository) / UNET_MODEL
        raise FileNotFoundError(f"no UNet model in {repository} (expected {model}/<version>/): export the model first")
    return version


def write_targets(version: Path, targets: Targets, initializers: dict | None = None) -> Path:
    """`lora_targets.json`: each adaptable layer's weight shape and, for graph runtimes, the graph weights that
    hold it (`[[initializer name, transposed], ...]`, `i2v.export.lora_initializers`)."""
    entries = {
        module: {"shape": list(shape), "initializers": (initializers or {}).get(module, [])}
        for module, shape in targets.items()
    }
    path = Path(version) / LORA_TARGETS_FILE
    path.write_text(json.dumps(entries, indent=1) + "\n")
    return path


NO_LORA = (
    "the served UNet takes no LoRA adapters: its export wrote no {file} (a TensorRT export serves them with "
    "`i2v export --runtime tensorrt --tensorrt-lora`; an older export: export again)"
)


def takes_lora(repository: Path) -> bool:
    """Whether the repository's served UNet applies LoRA adapters (its export wrote `lora_targets.json`)."""
    try:
        return (unet_version_folder(repository) / LORA_TARGETS_FILE).is_file()
    except FileNotFoundError:
        return False


def read_targets(version: Path) -> dict[str, dict]:
    path = Path(version) / LORA_TARGETS_FILE
    if not path.is_file():
        raise FileNotFoundError(NO_LORA.format(file=path))
    try:
        targets = json.loads(path.read_text())
        if isinstance(targets, dict) and all(isinstance(e, dict) and "shape" in e for e in targets.values()):
            return targets
    except (OSError, ValueError):
        pass
    raise LoraLayerMapError(f"{path} is damaged (not the export's layer map): export the model again")


def target_shapes(version: Path) -> dict[str, tuple[int, ...]]:
    return {module: tuple(entry["shape"]) for module, entry in read_targets(version).items()}


def graph_layers(version: Path) -> set[str]:
    """The UNet's adaptable layers (module paths) that the exported graph runs, read from the exporter's node
    metadata: a layer here that `lora_targets.json` leaves out exists in the UNet, but the graph runtime cannot
    adapt it (its weight folded, or shared with another layer: `i2v.export.lora_initializers`). Empty where
    there is no graph, or its exporter wrote no such metadata."""
    import ast

    import onnx

    from i2v.model.lora import ADAPTABLE_LAYERS

    graph = Path(version) / GRAPH_FILE
    if not graph.is_file():
        return set()
    adaptable = {f"{kind.__module__}.{kind.__qualname__}" for kind in ADAPTABLE_LAYERS}
    layers = set()
    for node in onnx.load(str(graph), load_external_data=False).graph.node:
        metadata = {entry.key: entry.value for entry in node.metadata_props}
        try:
            scopes, classes = ast.literal_eval(metadata[SCOPES_KEY]), ast.literal_eval(metadata[CLASSES_KEY])
        except (KeyError, ValueError, SyntaxError):
            continue
        layers.update(
            scope.removeprefix(UNET_SCOPE)
            for scope, kind in zip(scopes, classes, strict=False)
            if kind in adaptable and scope.startswith(UNET_SCOPE)
        )
    return layers
