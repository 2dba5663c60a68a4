"""The in-process loop with what the served path puts between two UNet calls, one thing at a time: reading
another 64 MiB (the BLS's, Triton's and the client's work evicting the UNet's data from the caches) and an idle
gap (the cores wait while the other processes hand the step on). argv: repository MiB gap_ms; prints the UNet
`session.run` time per call over 4 requests of 25 steps at 64x64x8."""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from inprocess import lighthouse, timed_loop

from i2v.params import GenerationParams

repository, mib, gap_ms = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
image = lighthouse()
other_data = np.ones(mib * 2**20 // 8)


def between_steps() -> None:
    other_data.sum()
    time.sleep(gap_ms / 1e3)


generator, unet_ms = timed_loop(repository, between_steps)
params = GenerationParams(prompt="a lighthouse", height=64, width=64, num_frames=8, num_inference_steps=25, seed=1)
generator(image, params)
unet_ms.clear()
for _ in range(4):
    generator(image, params)
print(f"{mib:3d} MiB read, {gap_ms:3.0f} ms idle before each UNet call: session.run {statistics.mean(unet_ms):6.2f} ms")
