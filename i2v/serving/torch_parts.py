"""The `torch` runtime's part models: the diffusers/transformers modules themselves, saved into the repository.

Each part model folder holds the weights of the one pipeline component it runs, written by `save_pretrained`
(`<part>/1/weights/`: config + safetensors; the VAE encoder and decoder each hold a copy of the VAE, so every
model folder stands alone for Triton's load/unload). Loading is `from_pretrained` of that component, wrapped
in the same part module the ONNX export traces (`i2v.export.onnx_export.part_module`): same inputs, same
outputs, same names, so the BLS cannot tell this runtime from the others.

On CUDA the modules run in fp16 (or the dtype the config asks for) with PyTorch's scaled-dot-product attention
(diffusers' `AttnProcessor2_0`, transformers' `attn_implementation="sdpa"`); on CPU in fp32, which is how the
test suite serves it here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.unets import I2VGenXLUNet
from transformers import CLIPTextModel, CLIPVisionModelWithProjection

# part -> (pipeline attribute, class that loads it)
COMPONENTS: dict[str, tuple[str, type]] = {
    "text_encoder": ("text_encoder", CLIPTextModel),
    "image_encoder": ("image_encoder", CLIPVisionModelWithProjection),
    "vae_encoder": ("vae", AutoencoderKL),
    "unet": ("unet", I2VGenXLUNet),
    "vae_decoder": ("vae", AutoencoderKL),
}
WEIGHTS_DIR = "weights"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def save_part_weights(pipe, part: str, folder: Path) -> Path:
    """Write the component `part` runs with `save_pretrained` (safetensors)."""
    attribute, _ = COMPONENTS[part]
    getattr(pipe, attribute).save_pretrained(folder)
    return Path(folder)


def load_part_module(
    part: str, folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """The part's torch module (its component loaded from `folder`), on `device` in `dtype`, in eval mode."""
    from i2v.export.onnx_export import part_module  # the wrappers the ONNX graphs are traced from

    attribute, cls = COMPONENTS[part]
    kwargs = {"attn_implementation": "sdpa"} if cls in (CLIPTextModel, CLIPVisionModelWithProjection) else {}
    component = cls.from_pretrained(folder, **kwargs)
    if hasattr(component, "set_attn_processor"):  # diffusers: SDPA, whatever the saved config preferred
        component.set_attn_processor(AttnProcessor2_0())
    module = part_module(SimpleNamespace(**{attribute: component}), part)
    return module.to(device=torch.device(device), dtype=dtype).eval()


def run_part_module(
    module: torch.nn.Module, inputs: list[torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """Floating inputs in the module's dtype, outputs back as float32 (the part's declared output type)."""
    device = next(module.parameters()).device
    feeds = [t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for t in inputs]
    with torch.inference_mode():
        outputs = module(*feeds)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return tuple(o.float().contiguous() for o in outputs)
