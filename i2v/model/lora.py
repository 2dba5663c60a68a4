"""LoRA adapters for the UNet: read a diffusers LoRA file, name its layers as the UNet does, check it fits.

One reading serves every runtime: the file's keys are normalised to UNet module paths
(`down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`), each with its down (A) and up (B) matrices and
its alpha, so the torch runtime injects them with PEFT and the ONNX Runtime and TensorRT runtimes merge
`W + scale * alpha / rank * B @ A` into the weights; the delta is computed here, once.

Accepted files (safetensors):
- diffusers' PEFT naming: `unet.<module>.lora_A.weight` / `.lora_B.weight`, with or without the `unet.` prefix;
- the older naming diffusers' own converter reads (`<module>.lora.down.weight`, `...processor.to_q_lora.up.weight`);
- alphas as `<module>.alpha` tensors (network alphas) or diffusers' `lora_adapter_metadata` (`lora_alpha`,
  `alpha_pattern`); without them the scale is 1 (alpha = rank), as diffusers and PEFT load them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
from safetensors import safe_open
from torch import nn

# A module's weight shape, by module path: what a LoRA must fit (`lora_targets`, written at export).
Targets = Mapping[str, tuple[int, ...]]
ADAPTABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.weight$")
MISMATCHES_SHOWN = 5


class LoraFileError(ValueError):
    """The file is not a usable LoRA: unreadable, incomplete, or not made for the served UNet."""


@dataclass(frozen=True)
class LoraLayer:
    """One adapted module: `W + scale * alpha / rank * up @ down`."""

    module: str
    down: torch.Tensor  # lora_A: [rank, in, *kernel]
    up: torch.Tensor  # lora_B: [out, rank, 1...]
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (int(self.up.shape[0]), *(int(d) for d in self.down.shape[1:]))

    def delta(self, scale: float) -> torch.Tensor:
        """What the adapter adds to the module's weight at `scale`, in the weight's layout (float32)."""
        product = self.up.flatten(1).float() @ self.down.flatten(1).float()
        return (scale * self.alpha / self.rank) * product.reshape(self.weight_shape)


@dataclass(frozen=True)
class LoraAdapter:
    layers: dict[str, LoraLayer]  # by UNet module path
    size_bytes: int

    @property
    def ranks(self) -> list[int]:
        return sorted({layer.rank for layer in self.layers.values()})

    @property
    def target_modules(self) -> list[str]:
        """The adapted layers' own names (`to_q`, `ff.net.2`), as PEFT's `target_modules` lists them."""
        return sorted({_short_name(m) for m in self.layers})

    def state_dict(self) -> dict[str, torch.Tensor]:
        """PEFT's naming without an adapter name (what `set_peft_model_state_dict` takes)."""
        out = {}
        for module, layer in self.layers.items():
            out[f"{module}.lora_A.weight"] = layer.down
            out[f"{module}.lora_B.weight"] = layer.up
        return out

    def check_fits(self, targets: Targets, left_out: Collection[str] = (), runtime: str = "") -> None:
        """Raise `LoraFileError` naming the first keys that the served UNet has no layer for, or whose shape
        does not fit that layer's weight (a LoRA for another architecture). `left_out`: layers the UNet has but
        the served `runtime` cannot adapt (a graph's folded or shared weights); a LoRA on one is refused saying
        so, and that the torch runtime adapts every layer."""
        problems, unadaptable = [], False
        for module, layer in sorted(self.layers.items()):
            shape = targets.get(module)
            if shape is None and module in left_out:
                unadaptable = True
                problems.append(
                    f"unet.{module}.lora_A.weight (the UNet has layer {module}, but this repository's {runtime} "
                    "runtime cannot adapt it)"
                )
            elif shape is None:
                problems.append(f"unet.{module}.lora_A.weight (the UNet has no adaptable layer {module})")
            elif not _fits(layer, tuple(shape)):
                problems.append(
                    f"unet.{module}.lora_A.weight {list(layer.down.shape)} / lora_B.weight {list(layer.up.shape)} "
                    f"(the UNet's weight there is {list(shape)})"
                )
        if problems:
            shown = "; ".join(problems[:MISMATCHES_SHOWN])
            more = f" (and {len(problems) - MISMATCHES_SHOWN} more)" if len(problems) > MISMATCHES_SHOWN else ""
            why = (
                f". The {runtime} runtime adapts only the layers whose weight its exported graph keeps as a weight "
                "of their own, not folded into another nor shared (docs/lora.md); the torch runtime adapts every "
                "linear and convolution layer: serve a repository exported with `i2v export --runtime torch`"
                if unadaptable
                else ""
            )
            raise LoraFileError(
                f"this LoRA does not fit the served UNet: {len(problems)} of {len(self.layers)} layers do not "
                f"match, first: {shown}{more}{why}"
            )


def _fits(layer: LoraLayer, shape: tuple[int, ...]) -> bool:
    down, up = tuple(layer.down.shape), tuple(layer.up.shape)
    return (
        len(down) == len(shape)
        and len(up) == len(shape)
        and down[1:] == shape[1:]
        and up[0] == shape[0]
        and up[1] == down[0]
        and all(d == 1 for d in up[2:])
    )


def _short_name(module: str) -> str:
    """`...transformer_blocks.0.attn1.to_out.0` → `to_out.0`; `...ff.net.2` → `net.2`: the last name with
    the index that follows it."""
    parts = module.split(".")
    tail = [parts[-1]]
    if parts[-1].isdigit() and len(parts) > 1:
        tail.insert(0, parts[-2])
    return ".".join(tail)


def read_lora(path: str | Path) -> LoraAdapter:
    """Read and normalise a LoRA file; raises `LoraFileError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise LoraFileError(f"LoRA file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types, and OSError / ValueError on bad headers
        raise LoraFileError(f"{path.name} is not a readable safetensors file ({exc})") from None
    if not tensors:
        raise LoraFileError(f"{path.name} holds no tensors")
    return LoraAdapter(layers=normalise(tensors, _metadata_alphas(metadata)), size_bytes=path.stat().st_size)


def normalise(
    tensors: Mapping[str, torch.Tensor], metadata_alphas: Mapping[str, float] | None = None
) -> dict[str, LoraLayer]:
    """The file's tensors → one `LoraLayer` per UNet module path."""
    others = sorted(k for k in tensors if k.startswith(("text_encoder", "te_", "lora_te")))
    if others:
        raise LoraFileError(f"this LoRA also adapts the text encoder ({others[0]}, ...); only UNet LoRAs are served")
    unprefixed = {k.removeprefix("unet.").replace(".processor.", "."): v for k, v in tensors.items()}
    alphas = {}
    for key, value in unprefixed.items():
        if key.endswith(".alpha"):
            if value.numel() != 1:
                raise LoraFileError(f"{key} must hold one number, not a tensor of shape {list(value.shape)}")
            alphas[key.removesuffix(".alpha")] = float(value)
    converted = convert_unet_state_dict_to_peft({k: v for k, v in unprefixed.items() if not k.endswith(".alpha")})
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in converted.items():
        match = _KEY.match(key.replace(".default.", "."))
        if match is None:
            raise LoraFileError(f"unrecognised key {key!r}: expected <module>.lora_A.weight / <module>.lora_B.weight")
        pairs.setdefault(match["module"], {})[match["kind"]] = value
    layers = {}
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            missing = ({"lora_A", "lora_B"} - set(pair)).pop()
            raise LoraFileError(f"the LoRA of {module} is incomplete: it has no {missing}.weight")
        down, up = pair["lora_A"], pair["lora_B"]
        if down.ndim < 2 or up.ndim != down.ndim or not down.is_floating_point() or not up.is_floating_point():
            raise LoraFileError(
                f"the LoRA of {module} has matrices of shapes {list(down.shape)} and {list(up.shape)}, not a pair"
            )
        rank = int(down.shape[0])
        if rank < 1 or 0 in up.shape or 0 in down.shape:
            shapes = f"{list(down.shape)} and {list(up.shape)}"
            raise LoraFileError(f"the LoRA of {module} is empty: matrices of shapes {shapes}")
        alpha = alphas.get(module, _pattern_alpha(module, metadata_alphas) or rank)
        if not (alpha == alpha and abs(alpha) < float("inf")):  # noqa: PLR0124 (NaN check)
            raise LoraFileError(f"the alpha of {module} is not a finite number")
        layers[module] = LoraLayer(module=module, down=down, up=up, alpha=float(alpha))
    if not layers:
        raise LoraFileError("this LoRA adapts no layer: it has no lora_A / lora_B weights")
    return layers


def _metadata_alphas(metadata: Mapping[str, str]) -> dict[str, float]:
    """diffusers' `lora_adapter_metadata` (its LoraConfig): `lora_alpha` for all, `alpha_pattern` per module;
    keys may carry the `unet.` prefix diffusers packs them with. "" → the default alpha for every module."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        config = {k.removeprefix("unet."): v for k, v in json.loads(raw).items()}
    except (ValueError, AttributeError):
        raise LoraFileError("the file's lora_adapter_metadata is not a JSON object") from None
    try:
        alphas = {str(k): float(v) for k, v in (config.get("alpha_pattern") or {}).items()}
        if config.get("lora_alpha") is not None:
            alphas[""] = float(config["lora_alpha"])
    except (TypeError, ValueError, AttributeError):
        raise LoraFileError(
            "the file's lora_adapter_metadata has a lora_alpha or alpha_pattern that is not a number per module"
        ) from None
    return alphas


def _pattern_alpha(module: str, alphas: Mapping[str, float] | None) -> float | None:
    """PEFT's rule: a pattern names a module by its full path or a dotted suffix of it."""
    for pattern, alpha in (alphas or {}).items():
        if pattern and (module == pattern or module.endswith("." + pattern)):
            return alpha
    return (alphas or {}).get("")


def lora_targets(unet: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every layer of the UNet a LoRA may adapt (linear and convolution weights), by module path."""
    return {name: tuple(m.weight.shape) for name, m in unet.named_modules() if isinstance(m, ADAPTABLE_LAYERS)}


def peft_config(adapter: LoraAdapter):
    """The PEFT `LoraConfig` that injects exactly this adapter's layers with their own ranks and alphas."""
    from peft import LoraConfig

    layers = adapter.layers.values()
    rank = Counter(layer.rank for layer in layers).most_common(1)[0][0]
    alpha = Counter(layer.alpha for layer in layers).most_common(1)[0][0]
    # full module paths: PEFT matches them as `(.*\.)?<pattern>$`, so each names exactly its own layer
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=sorted(adapter.layers),
        rank_pattern={m: x.rank for m, x in adapter.layers.items() if x.rank != rank},
        alpha_pattern={m: x.alpha for m, x in adapter.layers.items() if x.alpha != alpha},
        init_lora_weights=False,
    )
