"""The loop in this process over one exported repository's ONNX Runtime sessions, as the benchmark's
in-process runner runs it, with each UNet `session.run` timed (for probe.py and gap.py)."""

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2v.examples import lighthouse_image
from i2v.serving.generator import VideoGenerator
from i2v.serving.onnxruntime_session import open_session


def lighthouse() -> Image.Image:
    with lighthouse_image() as path:
        return Image.open(path).convert("RGB")


def timed_loop(repository: Path, before_unet: Callable[[], None] = lambda: None):
    """(the generator, the list each UNet `session.run` appends its milliseconds to); `before_unet` runs
    before each UNet call, untimed."""
    sessions = {p.parent.parent.name: open_session(p) for p in sorted(repository.glob("*/1/model.onnx"))}
    unet_ms: list[float] = []

    def run_part(name, inputs):
        if name == "unet":
            before_unet()
        session = sessions[name]
        start = time.perf_counter()
        outputs = session.run(None, {k: np.ascontiguousarray(v.numpy()) for k, v in inputs.items()})
        if name == "unet":
            unet_ms.append((time.perf_counter() - start) * 1e3)
        return {o.name: torch.from_numpy(r) for o, r in zip(session.get_outputs(), outputs, strict=True)}

    return VideoGenerator(repository / "i2vgen_xl" / "1" / "pipeline", run_part, torch.device("cpu")), unet_ms
