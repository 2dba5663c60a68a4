"""LoRA files for the tiny model, made with PEFT the way users train them, and the PEFT-injected UNet each one
stands for (the reference the served videos are compared with)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

peft = pytest.importorskip("peft")

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


class MadeLora:
    """A LoRA made with PEFT on a copy of the tiny UNet: the file, and the PEFT-injected UNet (the reference)."""

    def __init__(self, unet, path, *, seed, rank=4, alpha=None, rank_pattern=None, targets=ATTENTION, naming="peft"):
        torch.manual_seed(seed)
        self.unet = copy.deepcopy(unet)
        config = peft.LoraConfig(
            r=rank,
            lora_alpha=alpha or rank,
            target_modules=targets,
            rank_pattern=rank_pattern or {},
            alpha_pattern={k: v for k, v in (rank_pattern or {}).items()} if alpha is None else {},
            init_lora_weights=False,
        )
        peft.inject_adapter_in_model(config, self.unet, adapter_name="default")
        for name, parameter in self.unet.named_parameters():
            if "lora_B" in name:  # strong enough to change the video visibly
                parameter.data = torch.randn_like(parameter) * 0.5
        state = peft.get_peft_model_state_dict(self.unet, adapter_name="default")
        if naming == "peft":
            tensors = {f"unet.{k}": v.contiguous() for k, v in state.items()}
        else:  # the older diffusers naming: <module>.lora.down.weight / .lora.up.weight, no prefix
            tensors = {
                k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v.contiguous()
                for k, v in state.items()
            }
        if alpha is not None:
            for key in state:
                if key.endswith("lora_A.weight"):
                    tensors[key.removesuffix(".lora_A.weight") + ".alpha"] = torch.tensor(float(alpha))
        save_file(tensors, str(path))
        self.path = path

    def scaled(self, scale: float):
        from peft.tuners.tuners_utils import BaseTunerLayer

        for layer in self.unet.modules():
            if isinstance(layer, BaseTunerLayer):
                layer.set_scale("default", scale)
        return self.unet
