"""The five model parts as the server sees them: tensor names, data types, shapes, and each part's own facts.

One `PartSpec` per part drives the ONNX export (names, dynamic axes), its check against PyTorch (tolerance),
the TensorRT profiles (batch range) and engine check (fp16 tolerance), the Triton `config.pbtxt` of the part
and the torch runtime (which pipeline component it runs), so none of these can drift apart. A dimension is
an int (static) or a name (dynamic): the same name on two tensors is the same size.

Torch-free: it reads sizes from a loaded pipeline's configs, but imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

Dim = int | str

PART_NAMES = ("text_encoder", "image_encoder", "vae_encoder", "unet", "vae_decoder")
# A part call's request parameter: run the part on slices of this many along the first axis of its inputs, the
# outputs concatenated (the Python-backend part runner does): the BLS sends the VAE decoder several of a
# request's decode chunks in one call, where each call costs a hop between processes
BATCH_CHUNK_PARAMETER = "batch_chunk"
# A part model's `parameters` in config.pbtxt, written by the export and read by the generic part runner
# (`i2v.serving.part_runner`): what serves it, and for the torch runtime its dtype on a GPU and its compile mode.
RUNTIME_PARAMETER, TORCH_DTYPE_PARAMETER, TORCH_COMPILE_PARAMETER = "RUNTIME", "TORCH_DTYPE", "TORCH_COMPILE"
DEFAULT_TORCH_DTYPE = "float16"  # the torch runtime on a GPU (a CPU instance runs float32)
SPATIAL_DIMS = ("height", "width", "latent_height", "latent_width")  # the named axes a resolution fixes


def spatial_dims(height: int, width: int, vae_scale_factor: int) -> dict[str, int]:
    """The `SPATIAL_DIMS` of one resolution: pixels, and their latents (1/vae_scale_factor of them)."""
    latent_height, latent_width = height // vae_scale_factor, width // vae_scale_factor
    return dict(zip(SPATIAL_DIMS, (height, width, latent_height, latent_width), strict=True))


def named_dims(batch: int, frames: int, height: int, width: int, vae_scale_factor: int) -> dict[str, int]:
    """The size of every named axis of the part specs in one call. The VAE decoder's `batch` is the frames it
    decodes in the call (a video's frames as one batch)."""
    return {"batch": batch, "frames": frames, **spatial_dims(height, width, vae_scale_factor)}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64"
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class PartSpec:
    """One model part: a Triton model of the same name."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str
    component: str  # the pipeline attribute it runs ("vae" for both VAE parts)
    # (min, opt, max) of the batch axis in the TensorRT profiles; None: the VAE decode chunk decides it
    batch: tuple[int, int, int] | None
    # largest abs difference allowed between the ONNX graph in ONNX Runtime and PyTorch (fp32 both): about 10x
    # the worst seen on the tiny model over 30 random inputs and shapes; a wrong graph is off by far more
    onnx_tolerance: float
    # (atol, rtol) of the fp16 engine against the fp32 PyTorch part, element by element (polygraphy);
    # written against the documentation, not yet calibrated on a GPU (docs/tensorrt.md)
    fp16_tolerance: tuple[float, float]
    # compiled under the torch runtime's --torch-compile (the UNet: over 90% of a video's time on a GPU)
    compiled: bool = False

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


def part_specs(
    *, text_len: int, text_dim: int, clip_size: int, image_embed_dim: int, latent_channels: int
) -> dict[str, PartSpec]:
    """The parts of one model; the static sizes come from its configs (`specs_for_pipeline`).

    Batch ranges: the UNet and the text encoder see cond + uncond in one batch under guidance (2) and 1 with
    guidance off; the image and VAE encoders one image per request (the unconditional image embedding is
    zeros, made by the server); the VAE decoder a chunk of frames.
    """
    c = latent_channels
    video = ("batch", c, "frames", "latent_height", "latent_width")
    specs = (
        PartSpec(
            "text_encoder",
            (TensorSpec("input_ids", "int64", ("batch", text_len)),),
            (TensorSpec("text_embeds", "float32", ("batch", text_len, text_dim)),),
            "CLIP text encoder: penultimate hidden state through the final layer norm (clip_skip=1).",
            component="text_encoder",
            batch=(1, 2, 2),
            onnx_tolerance=1e-4,  # worst 2.5e-5: the tiny layer norm over 4 values divides noise by a small std
            fp16_tolerance=(2e-2, 2e-2),
        ),
        PartSpec(
            "image_encoder",
            (TensorSpec("pixel_values", "float32", ("batch", 3, clip_size, clip_size)),),
            (TensorSpec("image_embeds", "float32", ("batch", image_embed_dim)),),
            "CLIP vision encoder with projection; its size is fixed by the position embeddings.",
            component="image_encoder",
            batch=(1, 1, 2),
            onnx_tolerance=1e-5,  # worst 3.6e-7: a projection of one pooled token, outputs of order 1
            fp16_tolerance=(1e-2, 1e-2),
        ),
        PartSpec(
            "vae_encoder",
            (TensorSpec("image", "float32", ("batch", 3, "height", "width")),),
            (
                TensorSpec("latent_mean", "float32", ("batch", c, "latent_height", "latent_width")),
                TensorSpec("latent_std", "float32", ("batch", c, "latent_height", "latent_width")),
            ),
            "VAE encoder: the posterior's mean and std; the server samples it with the request's seed.",
            component="vae",
            batch=(1, 1, 1),
            onnx_tolerance=1e-5,  # worst 9.5e-7: mean and exp(0.5 * logvar), values of order 1
            fp16_tolerance=(1e-2, 1e-2),
        ),
        PartSpec(
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
            component="unet",
            batch=(1, 2, 2),
            onnx_tolerance=2e-5,  # worst 1.1e-6: one denoising step, noise predictions of order 1
            fp16_tolerance=(2e-2, 2e-2),
            compiled=True,
        ),
        PartSpec(
            "vae_decoder",
            (TensorSpec("latents", "float32", ("batch", c, "latent_height", "latent_width")),),
            (TensorSpec("image", "float32", ("batch", 3, "height", "width")),),
            "VAE decoder: latents already divided by the scaling factor, frames in [-1, 1].",
            component="vae",
            batch=None,
            onnx_tolerance=5e-5,  # worst 4.4e-6: pixels in [-1, 1] from latents of order 5
            fp16_tolerance=(1e-2, 1e-2),
        ),
    )
    return {spec.name: spec for spec in specs}


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


# Names, components and tolerances do not depend on sizes: the serving loop requests outputs by these names.
SIZE_FREE_SPECS = part_specs(text_len=1, text_dim=1, clip_size=1, image_embed_dim=1, latent_channels=1)
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {name: spec.output_names for name, spec in SIZE_FREE_SPECS.items()}
