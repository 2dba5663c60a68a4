"""LoRA per request in the UNet part: which adapter the BLS asked for, and how each runtime applies it.

The BLS resolves the request's `lora` against the registry once, at the start of the request, and passes the
adapter's name, file version and scale to every UNet call as request parameters (the UNet's tensors and its
ONNX graph stay as they are). The part keeps what it loaded by (name, file version), so a request whose
adapter is removed, or replaced, while it runs finishes with the weights it started with.

- ONNX Runtime: a session whose initializers holding the adapted layers are overridden at creation with
  `W + scale * delta` (`SessionOptions.add_initializer`); sessions are cached per (adapter, version, scale), at
  most `I2V_LORA_SESSIONS` (default 2) beside the base one, the least recently used closed first.
- torch: the adapter is injected once with PEFT (`inject_adapter_in_model`, `set_peft_model_state_dict`) and
  selected and scaled per request, or switched off; at most `I2V_LORA_ADAPTERS` (default 8) stay injected.
- TensorRT (the UNet engine built refittable, run by the part runner): one engine refitted when the adapter or
  scale changes, the same merged weights set by ONNX initializer name (TensorRT's ONNX parser names the
  refittable weights after them), and the previous adapter's layers set back to their base weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from i2v.model.lora_layer_map import read_targets
from i2v.model.lora_registry import LORA_SUFFIX, file_version
from i2v.model.repository_layout import GRAPH_FILE, LORA_BASE_FILE

if TYPE_CHECKING:  # torch and diffusers come with the reader: imported when an adapter is first read, so a part
    # that is asked for no adapter (every part but the UNet, and the UNet without one) never pays for them
    from i2v.model.lora import LoraAdapter

PARAMETER_NAME, PARAMETER_VERSION, PARAMETER_SCALE = "lora", "lora_version", "lora_scale"


class LoraUnavailableError(RuntimeError):
    """The adapter a request started with cannot be loaded any more (removed before the part first read it)."""


@dataclass(frozen=True)
class LoraChoice:
    """One request's adapter: registered name, file version (`file_version`) and scale."""

    name: str
    version: str
    scale: float

    def to_parameters(self) -> dict[str, str]:
        """Triton request parameters (strings: every Triton version carries those)."""
        return {PARAMETER_NAME: self.name, PARAMETER_VERSION: self.version, PARAMETER_SCALE: repr(float(self.scale))}

    @classmethod
    def from_parameters(cls, raw: str | None) -> LoraChoice | None:
        """From a request's parameters (JSON, as `request.parameters()` gives them); None: the base model."""
        values = json.loads(raw or "{}")
        if not values.get(PARAMETER_NAME):
            return None
        return cls(str(values[PARAMETER_NAME]), str(values[PARAMETER_VERSION]), float(values[PARAMETER_SCALE]))


class AdapterFiles:
    """Adapters read from the registry folder, by (name, version), the least recently used forgotten first."""

    def __init__(self, folder: Path, capacity: int = 16) -> None:
        self.folder, self.capacity = Path(folder), capacity
        self.loaded: OrderedDict[tuple[str, str], LoraAdapter] = OrderedDict()

    def get(self, choice: LoraChoice) -> LoraAdapter:
        key = (choice.name, choice.version)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        path = self.folder / f"{choice.name}{LORA_SUFFIX}"
        if not path.is_file() or file_version(path) != choice.version:
            raise LoraUnavailableError(f"lora {choice.name!r} was removed or replaced before it could be loaded")
        from i2v.model.lora import read_lora

        self.loaded[key] = read_lora(path)
        while len(self.loaded) > self.capacity:
            self.loaded.popitem(last=False)
        return self.loaded[key]


class MergedWeights:
    """The UNet graph's adaptable weights (`lora_targets.json`, `lora_base.safetensors` beside the graph): an
    adapter merged into them, by graph initializer name and in the graph's layout, for every graph runtime."""

    def __init__(self, version: Path) -> None:
        self.version = Path(version)
        self._targets: dict[str, dict] | None = None
        self._base: dict[str, np.ndarray] | None = None

    def _load(self) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
        if self._targets is None:
            from safetensors.numpy import load_file

            self._targets = read_targets(self.version)
            self._base = load_file(str(self.version / LORA_BASE_FILE))
        return self._targets, self._base

    def merged(self, adapter: LoraAdapter, scale: float) -> dict[str, np.ndarray]:
        """{initializer name: W + scale * delta} for every layer the adapter changes."""
        targets, base = self._load()
        adapter.check_fits({m: tuple(e["shape"]) for m, e in targets.items()})
        return self._in_graph({m: base[m] + layer.delta(scale).numpy() for m, layer in adapter.layers.items()})

    def base(self, initializers) -> dict[str, np.ndarray]:
        """The base weights of these initializers, in the graph's layout."""
        return self._in_graph(self._load()[1], keep=set(initializers))

    def _in_graph(self, weights: dict[str, np.ndarray], keep: set[str] | None = None) -> dict[str, np.ndarray]:
        """Weights by UNet module -> by the graph initializers holding them (a matmul's transposed); with `keep`,
        only those initializers."""
        targets, _ = self._load()
        found = {}
        for module, weight in weights.items():
            for initializer, transposed in targets[module]["initializers"]:
                if keep is None or initializer in keep:
                    found[initializer] = np.ascontiguousarray(weight.T if transposed else weight, dtype=np.float32)
        return found


class OnnxLoraSessions:
    """ONNX Runtime sessions of the UNet graph with a LoRA merged into its initializers."""

    def __init__(self, version: Path, files: AdapterFiles, open_session, capacity: int | None = None) -> None:
        self.version, self.files, self.open_session = Path(version), files, open_session
        self.capacity = capacity if capacity is not None else int(os.environ.get("I2V_LORA_SESSIONS", "2"))
        self.sessions: OrderedDict[LoraChoice, tuple[object, list]] = OrderedDict()
        self.weights = MergedWeights(version)

    def session(self, choice: LoraChoice):
        if choice in self.sessions:
            self.sessions.move_to_end(choice)
            return self.sessions[choice][0]
        overrides = self.weights.merged(self.files.get(choice), choice.scale)
        while len(self.sessions) >= max(self.capacity, 1):  # close before opening: memory stays bounded
            self.sessions.popitem(last=False)
        from onnxruntime import OrtValue

        values = [OrtValue.ortvalue_from_numpy(a) for a in overrides.values()]  # must outlive the session
        session = self.open_session(self.version / GRAPH_FILE, dict(zip(overrides, values, strict=True)))
        self.sessions[choice] = (session, values)
        return session

    def close(self, choice: LoraChoice) -> None:
        """Give back this adapter's session (its allocation failed): the next request with it opens a new one."""
        self.sessions.pop(choice, None)


# What is set after a change that may have failed part way (a TensorRT refit) or that touched every layer (PEFT
# adding or removing an adapter): equal to no choice, so the next select sets every layer concerned.
_UNKNOWN = object()


class EngineRefits:
    """One TensorRT engine (built refittable) holding the weights of one adapter, or of none, at a time."""

    def __init__(self, version: Path, files: AdapterFiles, refit) -> None:
        """`refit(weights)`: set {initializer name: array} in the engine (`i2v.serving.tensorrt_part`)."""
        self.files, self.refit = files, refit
        self.weights = MergedWeights(version)
        self.current: LoraChoice | None = None
        self.changed: set[str] = set()  # initializers that hold other than their base weights now

    def select(self, choice: LoraChoice | None) -> None:
        """Refit the engine to `choice` (None: the base model) unless it holds it already: the adapter's merged
        weights, and the base weights of the layers the previous adapter changed and this one does not."""
        if choice == self.current:
            return
        merged = self.weights.merged(self.files.get(choice), choice.scale) if choice is not None else {}
        update = {**self.weights.base(self.changed - merged.keys()), **merged}
        if update:
            # A refit that fails part way leaves the engine's weights unknown: until one succeeds, no choice
            # counts as held, and every initializer either adapter touched is set again.
            self.current, self.changed = _UNKNOWN, self.changed | merged.keys()
            self.refit(update)
        self.changed, self.current = set(merged), choice


class PeftAdapters:
    """Adapters injected into the torch UNet with PEFT, one active (or none) per request."""

    def __init__(self, unet, files: AdapterFiles, capacity: int | None = None) -> None:
        self.unet, self.files = unet, files
        self.capacity = capacity if capacity is not None else int(os.environ.get("I2V_LORA_ADAPTERS", "8"))
        self.injected: OrderedDict[tuple[str, str], str] = OrderedDict()  # (name, version) -> PEFT adapter name
        # The layers PEFT wraps, found again after each injection or deletion, and the (adapter, scale) they are
        # set to (None: the base model): a call for what is set already walks none of the UNet's modules (its
        # 1,700 cost about 1 ms a call, with the GPU idle before the forward)
        self.layers: list = []
        self.active: tuple[str, float] | None | object = None

    def select(self, choice: LoraChoice | None) -> None:
        adapter_name = None if choice is None else self._inject(choice)
        wanted = None if adapter_name is None else (adapter_name, choice.scale)
        if wanted == self.active:
            return
        for layer in self.layers:
            active = adapter_name is not None and adapter_name in layer.lora_A
            layer.enable_adapters(active)
            if active:
                layer.set_adapter(adapter_name, inference_mode=True)
                layer.set_scale(adapter_name, choice.scale)
        self.active = wanted

    def _changed(self) -> None:
        """After PEFT added or removed an adapter: its layers anew, and what they are set to unknown."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [layer for layer in self.unet.modules() if isinstance(layer, BaseTunerLayer)]
        self.active = _UNKNOWN

    def _inject(self, choice: LoraChoice) -> str:
        key = (choice.name, choice.version)
        if key in self.injected:
            self.injected.move_to_end(key)
            return self.injected[key]
        import torch
        from peft import inject_adapter_in_model, set_peft_model_state_dict

        from i2v.model.lora import peft_config

        adapter = self.files.get(choice)
        while len(self.injected) >= max(self.capacity, 1):
            self._delete(self.injected.popitem(last=False)[1])
        name = "lora_" + hashlib.sha1(f"{choice.name}\0{choice.version}".encode()).hexdigest()[:16]
        weight = next(self.unet.parameters())
        try:
            try:
                inject_adapter_in_model(peft_config(adapter), self.unet, adapter_name=name)
                result = set_peft_model_state_dict(self.unet, adapter.state_dict(), adapter_name=name)
            finally:  # PEFT changed the layers, even where it then failed
                self._changed()
            missing = [k for k in result.missing_keys if f".{name}." in k]
            if result.unexpected_keys or missing:
                taken = (result.unexpected_keys + missing)[:3]
                raise RuntimeError(f"lora {choice.name!r}: PEFT did not take keys {taken}")
        except Exception:
            self._delete(name)  # not kept half-injected: the cache would never evict it, and a retry adds another
            raise
        with torch.no_grad():
            for module_name, parameter in self.unet.named_parameters():
                if f".{name}." in module_name:
                    parameter.data = parameter.data.to(device=weight.device, dtype=weight.dtype)
        self.injected[key] = name
        return name

    def _delete(self, adapter_name: str) -> None:
        for layer in self.layers:  # every PEFT layer, as of the last injection
            if adapter_name in layer.lora_A:
                layer.delete_adapter(adapter_name)
        getattr(self.unet, "peft_config", {}).pop(adapter_name, None)
        self._changed()
