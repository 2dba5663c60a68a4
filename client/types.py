"""The request and result of one generation, as a caller builds and reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from i2v.params import GenerationParams, InvalidParameterError, check_value


@dataclass
class GenerationRequest:
    """An image and a prompt; every other field left as None takes the served model's default."""

    image: bytes
    prompt: str
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    fps: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    decode_chunk_size: int | None = None
    return_frames: bool = False

    @classmethod
    def from_file(cls, image: str | Path, prompt: str, **params) -> GenerationRequest:
        return cls(image=Path(image).read_bytes(), prompt=prompt, **params)

    def parameters(self) -> dict:
        """The generation parameters that are set, by name."""
        return {name: getattr(self, name) for name in GenerationParams.field_names() if getattr(self, name) is not None}

    def validate(self) -> GenerationRequest:
        """The server's checks, run before anything is sent (the server also checks its size multiple)."""
        if not isinstance(self.image, (bytes, bytearray)) or not self.image:
            raise InvalidParameterError("image must be the non-empty bytes of an image file")
        for name, value in self.parameters().items():
            check_value(name, value)
        return self


@dataclass(frozen=True)
class Progress:
    """One denoising step done: `step` of `total`."""

    step: int
    total: int


@dataclass
class GenerationResult:
    video: bytes  # H.264 MP4
    metadata: dict  # parameters used, seed, per-stage timings
    frames: np.ndarray | None = None  # uint8 [frames, height, width, 3] when requested
    progress: list[Progress] = field(default_factory=list)  # every step reported, in order

    @property
    def seed(self) -> int:
        return self.metadata["seed"]

    @property
    def timings(self) -> dict[str, float]:
        return self.metadata["timings"]

    def save(self, path: str | Path) -> Path:
        """Write the MP4, and its metadata beside it as `<name>.json`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.video)
        path.with_suffix(".json").write_text(json.dumps(self.metadata, indent=2) + "\n")
        return path
