"""The in-process loop with what the served path puts between two UNet calls, one thing at a time: reading
another 64 MiB (the BLS's, Triton's and the client's work evicting the UNet's data from the caches) and an idle
gap (the cores wait while the other processes hand the step on). argv: repository MiB gap_ms; prints the UNet
`session.run` time per call over 4 requests of 25 steps at 64x64x8."""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2v.examples import lighthouse_image
from i2v.params import GenerationParams
from i2v.serving.generator import VideoGenerator
from i2v.serving.onnxruntime_session import open_session

repository, mib, gap_ms = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with lighthouse_image() as path:
    image = Image.open(path).convert("RGB")
sessions = {p.parent.parent.name: open_session(p) for p in sorted(repository.glob("*/1/model.onnx"))}
other_data = np.ones(mib * 2**20 // 8)
unet_ms: list[float] = []


def run_part(name, inputs):
    if name == "unet":
        other_data.sum()
        time.sleep(gap_ms / 1e3)
    session = sessions[name]
    start = time.perf_counter()
    outputs = session.run(None, {k: np.ascontiguousarray(v.numpy()) for k, v in inputs.items()})
    if name == "unet":
        unet_ms.append((time.perf_counter() - start) * 1e3)
    return {o.name: torch.from_numpy(r) for o, r in zip(session.get_outputs(), outputs, strict=True)}


generator = VideoGenerator(repository / "i2vgen_xl" / "1" / "pipeline", run_part, torch.device("cpu"))
params = GenerationParams(prompt="a lighthouse", height=64, width=64, num_frames=8, num_inference_steps=25, seed=1)
generator(image, params)
unet_ms.clear()
for _ in range(4):
    generator(image, params)
print(f"{mib:3d} MiB read, {gap_ms:3.0f} ms idle before each UNet call: session.run {statistics.mean(unet_ms):6.2f} ms")
