"""What the served video must equal: diffusers' own I2VGenXLPipeline, seeded as the server seeds."""

from __future__ import annotations

import numpy as np
import torch

PROMPT = "a lighthouse in a storm"
NEGATIVE = "blurry, static"

# A loop in fp16 (PyTorch or TensorRT) against the fp32 pipeline, whole videos, PSNR of each frame. On the tiny
# model (CPU, 64x96x16, 10 steps, guidance 9) fp16 scores 57.7 dB and bf16 46; a wrong loop in fp32: the UNet's
# output 10% too large 43.6, halved 29.7, 10% noise added to it 27.7, zero 23.8. The tiny model's random weights
# make its video depend little on the conditioning (another prompt scores 48.5, fps 15 for 16 54.2): fp32 runs are
# compared to the pixel instead.
MIN_FP16_PSNR_DB = 45.0


def diffusers_frames(pipe, image, *, height, width, num_frames, steps, guidance, fps, seed) -> np.ndarray:
    """uint8 frames (F, H, W, 3); the server seeds the global RNG (posterior sample) and the noise generator."""
    torch.manual_seed(seed)
    frames = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        image=image,
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        target_fps=fps,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).frames[0]
    return (frames * 255).round().astype(np.uint8)
