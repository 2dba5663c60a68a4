"""The I2VGen-XL sampling loop over exported parts, step for step what diffusers' I2VGenXLPipeline computes.

The parts are reached through `run_part(name, inputs) -> outputs` (torch tensors keyed by the names in
`i2v.model.parts`), so the same loop runs inside the Triton BLS (parts are other Triton models) and in-process
over ONNX Runtime sessions (tests, benchmarks). It reads top to bottom like the diffusers pipeline:
`encode_prompt`, `encode_image`, `prepare_image_latents`, `prepare_latents`, the denoising loop,
`decode_latents`.

Randomness follows diffusers exactly: the pipeline samples the VAE posterior with the global torch RNG and the
initial noise with the request's generator; here both are CPU generators seeded with the request's seed, which
gives the same numbers as `torch.manual_seed(seed)` plus `torch.Generator().manual_seed(seed)` there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import Image
from transformers import CLIPImageProcessor, CLIPTokenizer

from i2v.model.info import ModelInfo
from i2v.model.repository_layout import IMAGE_PROCESSOR_FOLDER, SCHEDULER_FOLDER, TOKENIZER_FOLDER
from i2v.params import UNET_PER_STEP_STAGE, UNET_TOTAL_STAGE, GenerationParams
from i2v.serving.preprocess import center_crop_wide, resize_bilinear

RunPart = Callable[[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
# The most decoded frames (float32) one VAE decoder call returns, where the parts take several decode chunks a
# call: a Python-backend stub's shared memory grows to its largest tensor and keeps that size
DECODE_CALL_BYTES = 32 * 2**20
OnStep = Callable[[int, int], None]


class GenerationCancelled(Exception):
    """The client cancelled the request; raised between denoising steps."""


@dataclass
class GeneratedVideo:
    frames: np.ndarray  # uint8 [frames, height, width, 3]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


class VideoGenerator:
    """Image + prompt → video frames, calling the five parts through `run_part`. With `decoder_takes_chunks`,
    the VAE decoder splits a call into the request's decode chunks itself (the Python-backend part runner, told
    by the BLS): it is then called with as many chunks as `DECODE_CALL_BYTES` of frames hold, computing the same
    chunks in fewer calls, each of which costs a hop between processes there."""

    def __init__(
        self,
        pipeline_dir: Path,
        run_part: RunPart,
        device: torch.device | str = "cpu",
        decoder_takes_chunks: bool = False,
    ):
        pipeline_dir = Path(pipeline_dir)
        self.decoder_takes_chunks = decoder_takes_chunks
        self.info = ModelInfo.load(pipeline_dir)
        self.tokenizer = CLIPTokenizer.from_pretrained(pipeline_dir / TOKENIZER_FOLDER)
        self.feature_extractor = CLIPImageProcessor.from_pretrained(pipeline_dir / IMAGE_PROCESSOR_FOLDER)
        self.scheduler_config = json.loads((pipeline_dir / SCHEDULER_FOLDER / "scheduler_config.json").read_text())
        self.scheduler_class = getattr(diffusers, self.scheduler_config["_class_name"])
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.info.vae_scale_factor, do_resize=False)
        self.run_part = run_part
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        params: GenerationParams,
        on_step: OnStep | None = None,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> GeneratedVideo:
        params.validate(self.info.size_multiple)
        self.info.check_supported(params)  # a shape outside the TensorRT profiles: refused before any part runs
        timings: dict[str, float] = {}
        guided = params.guided

        with _timed(timings, "text_encoder"):
            prompt_embeds = self.encode_prompt(params.prompt, params.negative_prompt, guided)
        with _timed(timings, "image_encoder"):
            image_embeddings = self.encode_image(image, params.width, guided)
        with _timed(timings, "vae_encoder"):
            image_latents = self.prepare_image_latents(image, params, guided)

        fps = torch.full((params.batch,), float(params.fps), device=self.device)
        scheduler = self.scheduler_class.from_config(self.scheduler_config)
        scheduler.set_timesteps(params.num_inference_steps, device=self.device)
        latents = self.prepare_latents(params, scheduler.init_noise_sigma)

        unet_start = time.perf_counter()
        total = len(scheduler.timesteps)
        for i, t in enumerate(scheduler.timesteps):
            if is_cancelled is not None and is_cancelled():
                raise GenerationCancelled(f"cancelled before step {i + 1} of {total}")
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise_pred = self.run_part(
                "unet",
                {
                    "sample": model_input,
                    "timestep": t.reshape(1).to(torch.float32),
                    "fps": fps,
                    "image_latents": image_latents,
                    "image_embeddings": image_embeddings,
                    "encoder_hidden_states": prompt_embeds,
                },
            )["noise_pred"]
            if guided:
                noise_uncond, noise_text = noise_pred.chunk(2)
                noise_pred = noise_uncond + params.guidance_scale * (noise_text - noise_uncond)
            latents = self.scheduler_step(scheduler, noise_pred, t, latents)
            if on_step is not None:
                on_step(i + 1, total)
        timings[UNET_TOTAL_STAGE] = time.perf_counter() - unet_start
        timings[UNET_PER_STEP_STAGE] = timings[UNET_TOTAL_STAGE] / total

        with _timed(timings, "vae_decoder"):
            frames = self.decode_latents(latents, params.decode_chunk_size)
        return GeneratedVideo(frames=frames, timings=timings)

    def encode_prompt(self, prompt: str, negative_prompt: str, guided: bool) -> torch.Tensor:
        """CLIP text embeddings, [uncond, cond] stacked when guidance is on."""
        texts = [negative_prompt, prompt] if guided else [prompt]
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.run_part("text_encoder", {"input_ids": ids.to(self.device)})["text_embeds"]

    def encode_image(self, image: Image.Image, width: int, guided: bool) -> torch.Tensor:
        """CLIP image embedding of a square center crop; the unconditional embedding is zeros."""
        crop = self.feature_extractor.crop_size
        square = resize_bilinear(center_crop_wide(image, (width, width)), (crop["width"], crop["height"]))
        pixels = VaeImageProcessor.numpy_to_pt(VaeImageProcessor.pil_to_numpy(square))
        pixel_values = self.feature_extractor(
            images=pixels,
            do_normalize=True,
            do_center_crop=False,
            do_resize=False,
            do_rescale=False,
            return_tensors="pt",
        ).pixel_values
        embeds = self.run_part("image_encoder", {"pixel_values": pixel_values.to(self.device)})["image_embeds"]
        embeds = embeds.unsqueeze(1)
        return torch.cat([torch.zeros_like(embeds), embeds]) if guided else embeds

    def prepare_image_latents(self, image: Image.Image, params: GenerationParams, guided: bool) -> torch.Tensor:
        """First-frame latents, then a per-frame position mask (k / (frames - 1)) for the frames after it."""
        resized = center_crop_wide(image, (params.width, params.height))
        pixels = self.image_processor.preprocess(resized).to(self.device)
        posterior = self.run_part("vae_encoder", {"image": pixels})
        noise = torch.randn(posterior["latent_mean"].shape, generator=torch.Generator().manual_seed(params.seed)).to(
            self.device
        )
        latents = (posterior["latent_mean"] + posterior["latent_std"] * noise) * self.info.vae_scaling_factor
        latents = latents.unsqueeze(2)
        n = params.num_frames
        if n > 1:
            scales = torch.arange(1, n, device=self.device, dtype=latents.dtype) / (n - 1)
            mask = torch.ones_like(latents).repeat(1, 1, n - 1, 1, 1) * scales.view(1, 1, -1, 1, 1)
            latents = torch.cat([latents, mask], dim=2)
        return torch.cat([latents] * 2) if guided else latents

    def prepare_latents(self, params: GenerationParams, init_noise_sigma: float) -> torch.Tensor:
        f = self.info.vae_scale_factor
        shape = (1, self.info.latent_channels, params.num_frames, params.height // f, params.width // f)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(params.seed))
        return noise.to(self.device) * init_noise_sigma

    @staticmethod
    def scheduler_step(scheduler, noise_pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor):
        """The scheduler works on images: fold frames into the batch and back, as the pipeline does."""
        b, c, f, h, w = latents.shape
        latents = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        noise_pred = noise_pred.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        latents = scheduler.step(noise_pred, t, latents, eta=0.0).prev_sample
        return latents.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)

    def decode_latents(self, latents: torch.Tensor, chunk_size: int) -> np.ndarray:
        """Decode `chunk_size` frames at a time to bound memory; returns uint8 [frames, H, W, 3]."""
        latents = 1 / self.info.vae_scaling_factor * latents  # as diffusers writes it: bit-identical
        b, c, f, h, w = latents.shape
        latents = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        per_call = chunk_size
        if self.decoder_takes_chunks:
            frame_bytes = 3 * h * w * self.info.vae_scale_factor**2 * 4
            per_call = chunk_size * max(1, DECODE_CALL_BYTES // (chunk_size * frame_bytes))
        images = torch.cat(
            [
                self.run_part("vae_decoder", {"latents": latents[i : i + per_call]})["image"]
                for i in range(0, latents.shape[0], per_call)
            ]
        )
        frames = self.image_processor.postprocess(images.float().cpu(), output_type="np")
        return (frames * 255).round().astype(np.uint8)


class _timed:
    """Add the seconds spent in a `with` block to `timings[name]`."""

    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
