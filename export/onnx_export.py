"""Export the five I2VGen-XL parts to ONNX with the names, dtypes and dynamic axes of `parts.py`.

Each part is a small torch wrapper whose forward takes exactly the part's inputs (in spec order) and returns
exactly its outputs, so the ONNX graph, the Triton config and the serving loop all read from one table.
Four things stop a plain `torch.onnx.export` of these models (DESIGN.md, "Facts measured here"); each fix is
here, next to the part it serves:

1. the UNet's `AdaptiveAvgPool2d((32, 32))` becomes `ExactAdaptiveAvgPool2d`, in the exported copy only;
2. the dynamo exporter gets `dynamic_shapes` with an entry for every forward argument (`_dynamic_shapes`);
3. `aten.repeat_interleave.self_int` with a symbolic count gets our own translation (`_repeat_interleave`);
4. the CLIP causal mask, a TorchScript-exporter problem, does not arise: every part goes through dynamo.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch
from onnxscript import opset18 as op
from torch import nn
from torch.export import Dim
from tqdm.auto import tqdm

from i2v.export.parts import PART_NAMES, PartSpec, size_multiple, specs_for_pipeline, vae_scale_factor

# The exporter's registry warns, once per part, that torchvision's detection ops are skipped: these graphs
# use none of them, and torchvision is not a dependency.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

# Opset 18: the opset onnxscript's torchlib is written in, so the exporter emits it without a version
# conversion pass; it is >= 17 (native LayerNormalization, which TensorRT fuses) and well inside what
# TensorRT 10 and the ONNX Runtime of the NGC containers parse.
OPSET = 18


# ----------------------------------------------------------------------------------------------------------
# Fix 1: an adaptive average pool whose bins follow the runtime input size.


def _pool_matrix(size: int, out: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 membership of each input index in each of `out` bins, and each bin's length.

    `size` is a symbolic int under export, so the matrices follow the input at run time.

    Bins as PyTorch defines them: bin i covers [floor(i*size/out), ceil((i+1)*size/out)); they overlap when
    the input is smaller than the output, which is the tiny model's case (latents of 4x6 pooled to 32x32).
    """
    i = torch.arange(out, device=like.device)
    start = torch.div(i * size, out, rounding_mode="floor")
    end = torch.div((i + 1) * size + out - 1, out, rounding_mode="floor")
    j = torch.arange(size, device=like.device)
    member = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return member.to(like.dtype), (end - start).to(like.dtype)


class ExactAdaptiveAvgPool2d(nn.Module):
    """`nn.AdaptiveAvgPool2d` as matrix products, `P_h @ x @ P_w^T`, with P built from the input's H and W.

    The TorchScript exporter refuses adaptive pooling with dynamic sizes and the dynamo exporter bakes the bin
    layout of the export shape into the graph; built from the runtime shape, the matrices export dynamically.
    The sums are divided by the bin areas afterwards, as PyTorch's kernel does.
    """

    def __init__(self, output_size: tuple[int, int]) -> None:
        super().__init__()
        self.output_size = tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_h, out_w = self.output_size
        member_h, count_h = _pool_matrix(x.shape[-2], out_h, x)
        member_w, count_w = _pool_matrix(x.shape[-1], out_w, x)
        summed = member_h @ x @ member_w.transpose(0, 1)
        return summed / (count_h[:, None] * count_w[None, :])


def _with_exact_pooling(unet: nn.Module) -> nn.Module:
    """A shallow copy of `unet` with the exact pool: weights shared, the caller's UNet left as it was."""
    embedding = unet.image_latents_context_embedding
    layers = [
        ExactAdaptiveAvgPool2d(_pair(layer.output_size)) if isinstance(layer, nn.AdaptiveAvgPool2d) else layer
        for layer in embedding
    ]
    clone = copy.copy(unet)
    clone._modules = dict(unet._modules)  # copy.copy shares the submodule dict; this copy must not
    clone.image_latents_context_embedding = nn.Sequential(*layers)
    return clone


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


# ----------------------------------------------------------------------------------------------------------
# Fix 3: repeat_interleave with a symbolic repeat count.


def _repeat_interleave(self, repeats, dim: int | None = None, output_size=None):
    """aten.repeat_interleave.self_int as unsqueeze, expand, reshape.

    onnxscript's own translation puts a symbolic count (the UNet repeats its time and context embeddings
    once per frame) on the wrong axis: the export succeeds and ONNX Runtime then fails with "invalid expand
    shape". Repeating every element `repeats` times along `dim` is inserting an axis after `dim`, expanding
    it to `repeats` and merging it back.
    """
    if dim is None:  # repeat over the flattened input
        self, dim = op.Reshape(self, op.Constant(value_ints=[-1])), 0
    else:
        dim = dim % len(self.shape)
    count = op.Reshape(op.Cast(repeats, to=onnx.TensorProto.INT64), op.Constant(value_ints=[1]))
    before = op.Shape(self, end=dim + 1)
    after = op.Shape(self, start=dim + 1)
    unsqueezed = op.Unsqueeze(self, op.Constant(value_ints=[dim + 1]))
    expanded = op.Expand(unsqueezed, op.Concat(before, count, after, axis=0))
    merged = op.Mul(op.Shape(self, start=dim, end=dim + 1), count)
    new_shape = op.Concat(op.Shape(self, end=dim), merged, after, axis=0)
    return op.Reshape(expanded, new_shape)


CUSTOM_TRANSLATIONS: dict[Callable, Callable] = {
    torch.ops.aten.repeat_interleave.self_int: _repeat_interleave,
}


# ----------------------------------------------------------------------------------------------------------
# The five parts as torch modules: spec inputs in, spec outputs out.


class TextEncoderPart(nn.Module):
    """What `I2VGenXLPipeline.encode_prompt` computes at its default clip_skip=1: the penultimate hidden state
    through the final layer norm, without an attention mask (the pipeline passes none for CLIP)."""

    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden_states = self.text_encoder(input_ids, output_hidden_states=True).hidden_states
        return self.text_encoder.text_model.final_layer_norm(hidden_states[-2])


class ImageEncoderPart(nn.Module):
    """The CLIP image embedding; the pipeline adds the singleton token axis itself."""

    def __init__(self, image_encoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixel_values).image_embeds


class VaeEncoderPart(nn.Module):
    """The posterior's mean and std, unscaled: sampling needs the request's seed, so the server does it."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(image).latent_dist
        return posterior.mean, posterior.std


class UNetPart(nn.Module):
    """One denoising step. timestep [1] and fps [batch] are float32: the UNet casts both to float in its
    sinusoidal projection, so float inputs give the same embedding as the pipeline's integer ones."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        fps: torch.Tensor,
        image_latents: torch.Tensor,
        image_embeddings: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
    ) -> torch.Tensor:
        return self.unet(
            sample,
            timestep,
            fps=fps,
            image_latents=image_latents,
            image_embeddings=image_embeddings,
            encoder_hidden_states=encoder_hidden_states,
            return_dict=False,
        )[0]


class VaeDecoderPart(nn.Module):
    """Latents (already divided by the scaling factor) to frames in [-1, 1]."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample


def part_module(pipe, name: str, *, for_export: bool = False) -> nn.Module:
    """The torch module of one part, in eval mode.

    `for_export=True` gives the UNet the exact dynamic pool (fix 1) on a copy; the default keeps the
    pipeline's own modules, the reference the ONNX graphs are checked against.
    """
    if name == "text_encoder":
        module: nn.Module = TextEncoderPart(pipe.text_encoder)
    elif name == "image_encoder":
        module = ImageEncoderPart(pipe.image_encoder)
    elif name == "vae_encoder":
        module = VaeEncoderPart(pipe.vae)
    elif name == "unet":
        module = UNetPart(_with_exact_pooling(pipe.unet) if for_export else pipe.unet)
    elif name == "vae_decoder":
        module = VaeDecoderPart(pipe.vae)
    else:
        raise ValueError(f"part must be one of {', '.join(PART_NAMES)}, got {name!r}")
    return module.eval()


# ----------------------------------------------------------------------------------------------------------
# Inputs and dynamic shapes from the specs.


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
    sizes = {
        "batch": batch * frames if name == "vae_decoder" else batch,
        "frames": frames,
        "height": height,
        "width": width,
        "latent_height": height // factor,
        "latent_width": width // factor,
    }
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


def _dynamic_shapes(spec: PartSpec, pipe) -> dict[str, dict[int, Dim] | None]:
    """Fix 2: one entry per forward argument, keyed by name, so no axis is matched to the wrong input.

    A name used on two tensors is one `Dim`. Latent sizes are declared multiples of the UNet's downsampling
    (2 for the tiny model, 8 for the real one; pixels then multiples of the serving `size_multiple`): left
    free, torch.export would guard on the UNet's `size % factor` check and refuse or specialise the graph.
    `_name_dims` then gives the graph's axes the spec names.
    """
    vae = vae_scale_factor(pipe)
    unet = size_multiple(pipe) // vae  # latents are halved by the UNet's levels
    cells_h, cells_w = Dim("latent_height_cells", min=1), Dim("latent_width_cells", min=1)
    dims = {
        "batch": Dim("batch", min=1),
        "frames": Dim("frames", min=1),
        "latent_height": _times(unet, cells_h),
        "latent_width": _times(unet, cells_w),
        "height": _times(vae * unet, cells_h),
        "width": _times(vae * unet, cells_w),
    }
    shapes: dict[str, dict[int, Dim] | None] = {}
    for tensor in spec.inputs:
        axes = {axis: dims[d] for axis, d in enumerate(tensor.dims) if isinstance(d, str)}
        shapes[tensor.name] = axes or None
    return shapes


def _times(factor: int, dim: Dim) -> Dim:
    return dim if factor == 1 else factor * dim


def _name_dims(model: ir.Model, spec: PartSpec) -> None:
    """Give the graph's inputs and outputs the spec's shapes, after checking the export agrees with them.

    The exporter names derived axes after their expressions (`2*latent_height_cells`); the server and the
    Triton configs know them as parts.py names them. An axis the spec calls dynamic but the export fixed
    (torch.export specialised it) is an error here rather than a failure at another shape in production.
    """
    by_name = {t.name: t for t in (*spec.inputs, *spec.outputs)}
    for value in (*model.graph.inputs, *model.graph.outputs):
        dims = by_name[value.name].dims
        exported = list(value.shape) if value.shape is not None else [None] * len(dims)
        if len(exported) != len(dims):
            raise RuntimeError(f"{spec.name}: {value.name} exported with rank {len(exported)}, spec {dims}")
        for axis, (got, want) in enumerate(zip(exported, dims, strict=True)):
            if isinstance(got, int) and got != want:
                raise RuntimeError(f"{spec.name}: {value.name} axis {axis} exported as {got}, spec {want!r}")
        value.shape = ir.Shape(dims)


# ----------------------------------------------------------------------------------------------------------
# Export.


def export_part(pipe, name: str, path: Path, *, sample_frames: int = 8) -> Path:
    """Export one part to `path` with the names and dynamic axes of parts.py; returns the path written.

    The sample shape (`sample_shape`) only traces the graph (batch 2: torch.export specialises axes of size
    1); every named axis stays dynamic. A graph over protobuf's 2 GiB limit (the full-size UNet) keeps its
    weights beside it in `<name>.onnx.data`; smaller ones are a single file.
    """
    spec = specs_for_pipeline(pipe)[name]
    module = part_module(pipe, name, for_export=True)
    height, width = sample_shape(pipe)
    sample = part_inputs(pipe, name, batch=2, height=height, width=width, frames=sample_frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Noise from torch internals: shared axes named once, a pytree deprecation inside torch.export.
        warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        program = torch.onnx.export(
            module,
            tuple(torch.from_numpy(a) for a in sample.values()),
            dynamo=True,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            opset_version=OPSET,
            dynamic_shapes=_dynamic_shapes(spec, pipe),
            custom_translation_table=CUSTOM_TRANSLATIONS,
            optimize=True,  # onnxscript's constant folding, dead-code removal: 4436 -> 1558 nodes (tiny UNet)
            verbose=False,
        )
    _name_dims(program.model, spec)
    program.save(path, external_data=None)  # None: external only when the weights pass 2 GiB
    return path


def export_all(pipe, out_dir: Path, *, progress: bool = True) -> dict[str, Path]:
    """Export the five parts to `out_dir/<name>.onnx`; returns {part: path}."""
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    bar = tqdm(PART_NAMES, desc="ONNX export", unit="part", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        paths[name] = export_part(pipe, name, out_dir / f"{name}.onnx")
        if progress:
            bar.write(f"{name}: exported in {time.perf_counter() - start:.1f} s to {paths[name]}")
    return paths
