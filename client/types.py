"""The request and result of one generation, as a caller builds and reads them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from i2v.client.errors import InvalidInputError
from i2v.model.lora_registry import rank_text
from i2v.params import METADATA_SEED, METADATA_TIMINGS, InvalidParameterError, parameter, parameters
from i2v.video import save_video_with_metadata


class GenerationRequest:
    """An image and a prompt, plus any parameter of the table by name (`i2v.params.PARAMETERS`); a parameter
    left out (or None) takes the served model's default.

        GenerationRequest(image=png_bytes, prompt="a cat in the grass", num_frames=16, seed=42)

    Parameters read back as attributes (`request.num_frames`; None when not set). An unknown name is refused
    at once (`InvalidInputError`), listing the known ones.
    """

    def __init__(self, image: bytes, prompt: str, **params: Any) -> None:
        for name in params:
            with _invalid_input():
                parameter(name)
        self.image = image
        self.prompt = prompt
        self._params = {name: value for name, value in params.items() if value is not None and name != "prompt"}

    @classmethod
    def from_file(cls, image: str | Path, prompt: str, **params: Any) -> GenerationRequest:
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"the image {image} cannot be read: {exc.strerror or exc}") from None
        return cls(image=data, prompt=prompt, **params)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        parameter(name)  # an AttributeError would hide a typo; this names the known parameters
        return self._params.get(name)

    def __repr__(self) -> str:
        params = "".join(f", {k}={v!r}" for k, v in self._params.items())
        return f"GenerationRequest(image=<{len(self.image)} bytes>, prompt={self.prompt!r}{params})"

    def parameters(self) -> dict[str, Any]:
        """The parameters that are set, by name, the prompt first."""
        return {"prompt": self.prompt, **self._params}

    def validate(self, size_multiple: int | None = None) -> GenerationRequest:
        """The server's checks, run before anything is sent; raises `InvalidInputError` naming the parameter
        and what it allows. Height and width are checked against `size_multiple` only where given (the served
        model's size step: `client.size_step()`, 16 for the tiny model, 64 for I2VGen-XL)."""
        if not isinstance(self.image, (bytes, bytearray)) or not self.image:
            raise InvalidInputError("image must be the non-empty bytes of an image file")
        for entry in parameters():
            if entry.name == "prompt" or entry.name in self._params:
                with _invalid_input():
                    entry.check(self.parameters()[entry.name], size_multiple or 1)
        return self


@contextmanager
def _invalid_input() -> Iterator[None]:
    """The parameter table's `InvalidParameterError` as the client's `InvalidInputError`, with its message."""
    try:
        yield
    except InvalidParameterError as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(str(exc)) from None


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
        return self.metadata[METADATA_SEED]

    @property
    def timings(self) -> dict[str, float]:
        return self.metadata[METADATA_TIMINGS]

    def save(self, path: str | Path) -> Path:
        """Write the MP4, and its metadata JSON beside it (`i2v.video.metadata_path`)."""
        return save_video_with_metadata(path, self.video, self.metadata)


@dataclass(frozen=True)
class ServedModel:
    """What the served model publishes in its config: the value of each parameter a request leaves out (the
    seed: a random one), and the multiple that height and width must be (None from a repository exported
    before it was published)."""

    defaults: dict[str, Any]
    size_step: int | None


@dataclass(frozen=True)
class LoraAdapterInfo:
    """A LoRA adapter registered on the server: what a request's `lora` may name."""

    name: str
    size_bytes: int
    ranks: tuple[int, ...] = ()
    layers: int = 0
    target_modules: tuple[str, ...] = ()
    checked: bool = True  # False: put in the registry by hand, not described by `i2v lora add`

    @property
    def rank_text(self) -> str:
        """ "4", "2-6" where the layers' ranks differ, "?" for a file not described by `i2v lora add`."""
        return rank_text(self.ranks)

    @classmethod
    def from_listing(cls, entry: dict) -> LoraAdapterInfo:
        """One entry of the server's listing; raises TypeError or ValueError where a field has the wrong type."""
        info = cls(
            name=entry["name"],
            size_bytes=int(entry.get("size_bytes", 0)),
            ranks=tuple(int(r) for r in entry.get("ranks", ())),
            layers=int(entry.get("layers", 0)),
            target_modules=tuple(str(m) for m in entry.get("target_modules", ())),
            checked=bool(entry.get("checked", True)),
        )
        if not isinstance(info.name, str):
            raise TypeError(f"an adapter's name must be a string, got {info.name!r}")
        return info
