"""Which weights of the exported UNet graph hold which UNet layer: what a LoRA merge overrides.

The exporter keeps a parameter's name for the weights it uses as they are (`unet.conv_in.weight`), but its
constant folding replaces the linear layers' weights by anonymous transposed copies (`val_266` = W.T, for the
MatMul). So the map is made by value: each initializer is matched against every adaptable UNet weight and its
transpose. A weight held by no initializer, or one initializer equal to two layers' weights (folded together),
is left out: a LoRA on that layer is refused at registration rather than merged wrongly. The map and the
base weights go beside the graph (`lora_targets.json`, `lora_base.safetensors`), so the server merges a LoRA
without reading the graph; TensorRT's refit uses the same initializer names.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import save_file

from i2v.model.lora import lora_targets
from i2v.model.lora_layer_map import write_targets
from i2v.model.repository_layout import LORA_BASE_FILE


def _digest(array: np.ndarray) -> tuple:
    return array.shape, array.dtype.str, hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def initializer_map(graph: Path, unet) -> tuple[dict[str, list[list]], dict[str, np.ndarray]]:
    """({module path: [[initializer, transposed], ...]}, {module path: its float32 weight}) for every
    adaptable layer of `unet` that the graph holds unambiguously."""
    targets = lora_targets(unet)
    weights = {
        name: module.weight.detach().float().cpu().numpy() for name, module in unet.named_modules() if name in targets
    }
    index: dict[tuple, list[tuple[str, bool]]] = defaultdict(list)
    for module, weight in weights.items():
        index[_digest(weight)].append((module, False))
        if weight.ndim == 2:
            index[_digest(weight.T)].append((module, True))
    found: dict[str, list[list]] = defaultdict(list)
    ambiguous: set[str] = set()
    model = onnx.load(str(graph))
    for initializer in model.graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or len(initializer.dims) < 2:
            continue
        matches = index.get(_digest(numpy_helper.to_array(initializer)), [])
        if len({m for m, _ in matches}) > 1:  # one graph weight for two layers: neither can be merged alone
            ambiguous.update(m for m, _ in matches)
        elif matches:
            module, transposed = matches[0]
            found[module].append([initializer.name, transposed])
    held = {m: v for m, v in found.items() if m not in ambiguous}
    return held, {m: weights[m] for m in held}


def write_lora_files(graph: Path, unet, version: Path) -> dict[str, list[list]]:
    """Write `lora_targets.json` (the layers a LoRA may adapt on this graph) and `lora_base.safetensors`
    (their base weights) into the UNet part's version folder; returns the map."""
    held, base = initializer_map(graph, unet)
    targets = {m: tuple(w.shape) for m, w in base.items()}
    write_targets(version, targets, held)
    save_file(dict(base), str(Path(version) / LORA_BASE_FILE))
    return held
