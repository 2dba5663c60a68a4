"""The request shapes a TensorRT build supports, and what follows from them.

One declared table (`SupportedShapes`: resolutions, a frame range, the largest VAE decode chunk) drives three
things that must agree:

(a) the TensorRT optimization profiles of each part (`part_profiles`): min/opt/max for every dynamic axis;
(b) the `config.pbtxt` dims of the `tensorrt_plan` models (`config_dims`): an axis fixed in every profile is
    written as its size, any other as -1, so Triton's own check of the config against the engine passes;
(c) the server-side check: the same table is written into `model_info.json`, and the BLS refuses a request
    outside it before any part runs (`SupportedShapes.check`).

One profile per resolution: TensorRT tunes its kernels for the opt shape of a profile, and a video model
spends nearly all its time in the UNet at one fixed size per request, so each supported resolution gets its
own profile with height and width fixed, and the frame axis ranging over the supported frame counts. Parts
without spatial axes (the text and image encoders) get a single profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from i2v.model.info import TINY_MODEL, SupportedShapes
from i2v.model.parts import SIZE_FREE_SPECS, SPATIAL_DIMS, PartSpec, TensorSpec, spatial_dims
from i2v.params import RESOLUTION_PRESETS, parameter

# The production table: the resolution presets (512p, 768p, 1024p; square and 16:9 where they fit the
# 1280-pixel size limit), 8-32 frames, VAE decode chunks up to 8 frames.
DEFAULT_SUPPORTED_SHAPES = SupportedShapes(resolutions=tuple(RESOLUTION_PRESETS.values()))
# The tiny model's own sizes (its default 64x96 and a square), for building its engines on a GPU host.
TINY_SUPPORTED_SHAPES = SupportedShapes(resolutions=((64, 64), (64, 96)))


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max shape of one input in one profile (polygraphy's `ShapeTuple`, without TensorRT)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class OptimizationProfile:
    """One TensorRT optimization profile of one part."""

    inputs: dict[str, ShapeRange]  # input name -> shape range, in the spec's input order
    dims: dict[str, tuple[int, int, int]]  # every named dim -> (min, opt, max): what the outputs follow
    resolution: tuple[int, int] | None  # (height, width) it serves; None for parts without spatial axes

    def describe(self) -> str:
        """'512x512: sample [1-2-2,4,8-16-32,64,64] ...' for config comments and the build log."""
        shapes = []
        for name, r in self.inputs.items():
            axes = [str(a) if a == c else f"{a}-{b}-{c}" for a, b, c in zip(r.min, r.opt, r.max, strict=True)]
            shapes.append(f"{name} [{','.join(axes)}]")
        where = f"{self.resolution[0]}x{self.resolution[1]}" if self.resolution else "any size"
        return f"{where}: " + " ".join(shapes)


def supported_shapes_for(source: str) -> SupportedShapes:
    return TINY_SUPPORTED_SHAPES if str(source) == TINY_MODEL else DEFAULT_SUPPORTED_SHAPES


def dim_ranges(
    part: str, shapes: SupportedShapes, height: int, width: int, vae_scale_factor: int
) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of every named dim of `part` at one resolution, pixels and latents alike."""
    if height % vae_scale_factor or width % vae_scale_factor:
        raise ValueError(f"{height}x{width} is not a multiple of the VAE scale factor {vae_scale_factor}")
    low, high = shapes.num_frames
    opt_frames = parameter("num_frames").default  # TensorRT tunes for the serving default
    frames = (low, min(max(opt_frames, low), high), high)
    if part == "vae_decoder":
        chunk = shapes.max_decode_chunk_size
        batch = (1, min(parameter("decode_chunk_size").default, chunk), chunk)
    else:
        batch = SIZE_FREE_SPECS[part].batch
    fixed = spatial_dims(height, width, vae_scale_factor).items()
    return {"batch": batch, "frames": frames, **{name: (size,) * 3 for name, size in fixed}}


def _shape_range(tensor: TensorSpec, dims: dict[str, tuple[int, int, int]]) -> ShapeRange:
    def at(i: int) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else dims[d][i] for d in tensor.dims)

    return ShapeRange(min=at(0), opt=at(1), max=at(2))


def has_spatial_axes(spec: PartSpec) -> bool:
    return any(d in SPATIAL_DIMS for t in spec.inputs for d in t.dims if isinstance(d, str))


def part_profiles(spec: PartSpec, shapes: SupportedShapes, vae_scale_factor: int) -> list[OptimizationProfile]:
    """The optimization profiles of one part: one per resolution, or one if the part has no spatial axes."""
    spatial = has_spatial_axes(spec)
    profiles: list[OptimizationProfile] = []
    for height, width in shapes.resolutions if spatial else shapes.resolutions[:1]:
        dims = dim_ranges(spec.name, shapes, height, width, vae_scale_factor)
        inputs = {t.name: _shape_range(t, dims) for t in spec.inputs}
        if all(p.inputs != inputs for p in profiles):  # two resolutions may share a latent size: one profile
            profiles.append(OptimizationProfile(inputs, dims, (height, width) if spatial else None))
    return profiles


def config_dims(tensor: TensorSpec, profiles: Sequence[OptimizationProfile]) -> list[int]:
    """Triton dims of one tensor over all profiles: a size where the axis is that size in every profile, else -1.

    Triton's TensorRT backend compares a config dim with the engine's only where neither is -1 and checks a
    fixed one against each profile's [min, max]; a size that is fixed in every profile satisfies both.
    """
    dims = []
    for d in tensor.dims:
        if isinstance(d, int):
            dims.append(d)
            continue
        values = {v for p in profiles for v in p.dims[d]}
        dims.append(values.pop() if len(values) == 1 else -1)
    return dims
