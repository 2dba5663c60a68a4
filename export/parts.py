"""The five model parts as the server sees them: tensor names, data types and shapes.

One table drives the ONNX export (input/output names, dynamic axes), the validation shapes and the Triton
`config.pbtxt` of each part, so the three cannot drift apart. A dimension is an int (static) or a name
(dynamic): the same name on two tensors is the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64"
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class PartSpec:
    """One exported model part: a Triton model of the same name."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str


def part_specs(
    *, text_len: int, text_dim: int, clip_size: int, image_embed_dim: int, latent_channels: int
) -> dict[str, PartSpec]:
    """The parts for one model; the static sizes come from its configs (see `PipelineInfo`)."""
    c = latent_channels
    video = ("batch", c, "frames", "latent_height", "latent_width")
    return {
        "text_encoder": PartSpec(
            "text_encoder",
            (TensorSpec("input_ids", "int64", ("batch", text_len)),),
            (TensorSpec("text_embeds", "float32", ("batch", text_len, text_dim)),),
            "CLIP text encoder: penultimate hidden state through the final layer norm (clip_skip=1).",
        ),
        "image_encoder": PartSpec(
            "image_encoder",
            (TensorSpec("pixel_values", "float32", ("batch", 3, clip_size, clip_size)),),
            (TensorSpec("image_embeds", "float32", ("batch", image_embed_dim)),),
            "CLIP vision encoder with projection; its size is fixed by the position embeddings.",
        ),
        "vae_encoder": PartSpec(
            "vae_encoder",
            (TensorSpec("image", "float32", ("batch", 3, "height", "width")),),
            (
                TensorSpec("latent_mean", "float32", ("batch", c, "latent_height", "latent_width")),
                TensorSpec("latent_std", "float32", ("batch", c, "latent_height", "latent_width")),
            ),
            "VAE encoder: the posterior's mean and std; the server samples it with the request's seed.",
        ),
        "unet": PartSpec(
            "unet",
            (
                TensorSpec("sample", "float32", video),
                TensorSpec("timestep", "float32", (1,)),
                TensorSpec("fps", "float32", ("batch",)),
                TensorSpec("image_latents", "float32", video),
                TensorSpec("image_embeddings", "float32", ("batch", 1, image_embed_dim)),
                TensorSpec("encoder_hidden_states", "float32", ("batch", text_len, text_dim)),
            ),
            (TensorSpec("noise_pred", "float32", video),),
            "I2VGen-XL 3D UNet: one denoising step for a batch (cond and uncond together under guidance).",
        ),
        "vae_decoder": PartSpec(
            "vae_decoder",
            (TensorSpec("latents", "float32", ("batch", c, "latent_height", "latent_width")),),
            (TensorSpec("image", "float32", ("batch", 3, "height", "width")),),
            "VAE decoder: latents already divided by the scaling factor, frames in [-1, 1].",
        ),
    }


PART_NAMES = ("text_encoder", "image_encoder", "vae_encoder", "unet", "vae_decoder")


def specs_for_pipeline(pipe) -> dict[str, PartSpec]:
    """`part_specs` with the static sizes read from a loaded `I2VGenXLPipeline`."""
    return part_specs(
        text_len=pipe.tokenizer.model_max_length,
        text_dim=pipe.text_encoder.config.hidden_size,
        clip_size=pipe.feature_extractor.crop_size["height"],
        image_embed_dim=pipe.image_encoder.config.projection_dim,
        latent_channels=pipe.unet.config.in_channels,
    )


def vae_scale_factor(pipe) -> int:
    """Pixels per latent: the VAE halves the size at every level but the last."""
    return 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def size_multiple(pipe) -> int:
    """What height and width must be multiples of: the VAE's factor times the UNet's (it halves latents at all
    levels but the last, and its skip connections want sizes that divide): 16 for the tiny model, 64 for the real."""
    return vae_scale_factor(pipe) * 2 ** (len(pipe.unet.config.down_block_types) - 1)


# Output names do not depend on sizes: the serving loop requests them by these names.
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    name: tuple(t.name for t in spec.outputs)
    for name, spec in part_specs(text_len=1, text_dim=1, clip_size=1, image_embed_dim=1, latent_channels=1).items()
}
