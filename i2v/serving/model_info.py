"""What the serving loop must know about the exported model, written by `i2v export` as `model_info.json`.

The BLS does not load the diffusers modules; the few numbers it needs from their configs travel in this file
beside the tokenizer, the scheduler config and the CLIP image processor config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

MODEL_INFO_FILE = "model_info.json"


@dataclass
class ModelInfo:
    source: str  # where the weights came from: "tiny", a hub id or a folder
    vae_scale_factor: int  # pixels per latent cell
    vae_scaling_factor: float  # latents are scaled by this after encoding
    latent_channels: int
    size_multiple: int  # height and width must be multiples of this (VAE and UNet downsampling)
    text_len: int  # tokenizer max length
    defaults: dict = field(default_factory=dict)  # GenerationParams defaults for this model

    def save(self, folder: Path) -> Path:
        path = Path(folder) / MODEL_INFO_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ModelInfo:
        return cls(**json.loads((Path(folder) / MODEL_INFO_FILE).read_text()))
