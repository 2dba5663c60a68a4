"""Generation parameters: names, defaults and allowed ranges, shared by the server and the client.

The server validates every request with `GenerationParams.validate`; the client runs the same check before it
sends anything, so a bad value fails fast with the same message either way. Torch-free on purpose: a
client-only install imports this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

# Inclusive ranges. Defaults follow diffusers' I2VGenXLPipeline.__call__.
NUM_FRAMES_RANGE = (8, 32)
FPS_RANGE = (4, 24)
STEPS_RANGE = (10, 100)
GUIDANCE_RANGE = (1.0, 20.0)
SIZE_RANGE = (64, 1280)
SEED_RANGE = (0, 2**63 - 1)
MAX_PROMPT_CHARS = 2000
DECODE_CHUNK_RANGE = (1, 32)

# Named resolutions (height, width): the square and 16:9 shapes the TensorRT profiles cover.
RESOLUTION_PRESETS: dict[str, tuple[int, int]] = {
    "512p": (512, 512),
    "512p-wide": (512, 896),
    "768p": (768, 768),
    "768p-wide": (704, 1280),
    "1024p": (1024, 1024),
}


class InvalidParameterError(ValueError):
    """A request parameter is missing, of the wrong type or outside its range."""


@dataclass
class GenerationParams:
    """Everything that shapes one video besides the image itself."""

    prompt: str
    negative_prompt: str = ""
    height: int = 704
    width: int = 1280
    num_frames: int = 16
    fps: int = 16
    num_inference_steps: int = 50
    guidance_scale: float = 9.0
    seed: int = 0
    decode_chunk_size: int = 1

    def validate(self, size_multiple: int = 8) -> GenerationParams:
        """Raise `InvalidParameterError` naming the first bad field and its allowed range."""
        for name in self.field_names():
            check_value(name, getattr(self, name), size_multiple)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _check_int(name: str, value: object, bounds: tuple[int, int]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterError(f"{name} must be an integer, got {type(value).__name__}")
    low, high = bounds
    if not low <= value <= high:
        raise InvalidParameterError(f"{name} must be between {low} and {high}, got {value}")


def check_value(name: str, value: object, size_multiple: int = 8) -> None:
    """Check one parameter; the client checks the ones it sends, the server checks all."""
    if name == "prompt" and (not isinstance(value, str) or not value.strip()):
        raise InvalidParameterError("prompt must be a non-empty string")
    if name in ("prompt", "negative_prompt"):
        if not isinstance(value, str):
            raise InvalidParameterError(f"{name} must be a string, got {type(value).__name__}")
        if len(value) > MAX_PROMPT_CHARS:
            raise InvalidParameterError(f"{name} must be at most {MAX_PROMPT_CHARS} characters, got {len(value)}")
    elif name == "guidance_scale":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParameterError(f"guidance_scale must be a number, got {type(value).__name__}")
        low, high = GUIDANCE_RANGE
        if not math.isfinite(value) or not low <= value <= high:
            raise InvalidParameterError(f"guidance_scale must be between {low:g} and {high:g}, got {value}")
    elif name in INT_RANGES:
        _check_int(name, value, INT_RANGES[name])
        if name in ("height", "width") and value % size_multiple:
            raise InvalidParameterError(f"{name} must be a multiple of {size_multiple}, got {value}")
    else:
        raise InvalidParameterError(f"unknown parameter {name!r}")


INT_RANGES = {
    "height": SIZE_RANGE,
    "width": SIZE_RANGE,
    "num_frames": NUM_FRAMES_RANGE,
    "fps": FPS_RANGE,
    "num_inference_steps": STEPS_RANGE,
    "seed": SEED_RANGE,
    "decode_chunk_size": DECODE_CHUNK_RANGE,
}
