"""Export the five I2VGen-XL parts to ONNX with the names, dtypes and dynamic axes of their specs.

Each part is the torch module of `i2v.model.modules` (spec inputs in, spec outputs out), rewritten where a
plain export fails (`i2v.export.rewrites`), traced by the dynamo exporter with `dynamic_shapes` for every
forward argument (with `dynamo=True`, `dynamic_axes` are matched to inputs by order, not name), and given the
spec's axis names, so the ONNX graph, the Triton config and the serving loop all read from one table.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import onnx_ir as ir
import torch
from torch.export import Dim
from tqdm.auto import tqdm

from i2v.export.rewrites import CUSTOM_TRANSLATIONS, for_export
from i2v.export.sample_inputs import part_inputs, sample_shape
from i2v.model.parts import PART_NAMES, PartSpec, size_multiple, specs_for_pipeline, vae_scale_factor

# The exporter's registry warns, once per part, that torchvision's detection ops are skipped: these graphs
# use none of them, and torchvision is not a dependency.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

# Opset 18: the opset onnxscript's torchlib is written in, so the exporter emits it without a version
# conversion pass; it is >= 17 (native LayerNormalization, which TensorRT fuses) and well inside what
# TensorRT 10 and the ONNX Runtime of the NGC containers parse.
OPSET = 18


def _dynamic_shapes(spec: PartSpec, pipe) -> dict[str, dict[int, Dim] | None]:
    """One entry per forward argument, keyed by name, so no axis is matched to the wrong input.

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


def export_part(pipe, name: str, path: Path, *, sample_frames: int = 8) -> Path:
    """Export one part to `path` with the names and dynamic axes of parts.py; returns the path written.

    The sample shape (`sample_shape`) only traces the graph (batch 2: torch.export specialises axes of size
    1); every named axis stays dynamic. A graph over protobuf's 2 GiB limit (the full-size UNet) keeps its
    weights beside it in `<name>.onnx.data`; smaller ones are a single file.
    """
    spec = specs_for_pipeline(pipe)[name]
    module = for_export(pipe, name)
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
