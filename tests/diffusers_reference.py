"""What the served video must equal: diffusers' own I2VGenXLPipeline, seeded as the server seeds."""

from __future__ import annotations

import numpy as np
import torch

PROMPT = "a lighthouse in a storm"
NEGATIVE = "blurry, static"


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
