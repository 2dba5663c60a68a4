"""Random part inputs that look like the server's, shaped from the part specs: for tracing the export, checking
the graphs against PyTorch and comparing TensorRT engines with ONNX Runtime."""

from __future__ import annotations

import numpy as np

from i2v.model.parts import named_dims, size_multiple, specs_for_pipeline, vae_scale_factor


def part_inputs(
    pipe, name: str, *, batch: int, height: int, width: int, frames: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random inputs that look like the server's, in spec order.

    `height`/`width` are pixel sizes (the UNet and VAE decoder get latents, 1/8 of them); `frames` is the
    video length: the UNet sees it as the frame axis, the VAE decoder as `batch * frames` images, since the
    server decodes frames as a batch. The text and image encoders ignore the sizes they do not have.
    """
    spec = specs_for_pipeline(pipe)[name]
    rng = np.random.default_rng(seed)
    factor = vae_scale_factor(pipe)
    if height % factor or width % factor:
        raise ValueError(f"height and width must be multiples of {factor}, got {height}x{width}")
    sizes = named_dims(batch * frames if name == "vae_decoder" else batch, frames, height, width, factor)
    arrays: dict[str, np.ndarray] = {}
    for tensor in spec.inputs:
        shape = tuple(d if isinstance(d, int) else sizes[d] for d in tensor.dims)
        arrays[tensor.name] = _random_input(pipe, tensor.name, shape, rng).astype(tensor.dtype)
    return arrays


def _random_input(pipe, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name == "input_ids":
        # <start> + random tokens + <end>, padded with the pad token, like a tokenized prompt.
        tok = pipe.tokenizer
        ids = rng.integers(0, len(tok), size=shape)
        ids[:, 0] = tok.bos_token_id
        ends = rng.integers(1, shape[1], size=shape[0])
        for row, end in enumerate(ends):
            ids[row, end] = tok.eos_token_id
            ids[row, end + 1 :] = tok.pad_token_id
        return ids
    if name == "pixel_values":
        # CLIP-normalised pixels: uniform [0, 1] through the processor's mean and std.
        fe = pipe.feature_extractor
        mean = np.asarray(fe.image_mean).reshape(1, 3, 1, 1)
        std = np.asarray(fe.image_std).reshape(1, 3, 1, 1)
        return (rng.uniform(0, 1, size=shape) - mean) / std
    if name == "image":
        return rng.uniform(-1, 1, size=shape)
    if name == "timestep":
        return np.full(shape, 981.0)  # the first DDIM step of a 50-step schedule
    if name == "fps":
        return np.full(shape, 16.0)
    if name == "latents":
        return rng.standard_normal(shape) / pipe.vae.config.scaling_factor
    return rng.standard_normal(shape)  # sample, image_latents, image_embeddings, encoder_hidden_states


def sample_shape(pipe) -> tuple[int, int]:
    """The (height, width) the export traces with: 64x96 where the model allows it (the tiny model), else 2x3
    size steps (128x192 for the full-size model, whose sizes are multiples of 64: torch.export refuses 64x96)."""
    multiple = size_multiple(pipe)
    return (64, 96) if 64 % multiple == 0 and 96 % multiple == 0 else (2 * multiple, 3 * multiple)
