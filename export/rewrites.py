"""The export rewrites: what stops a plain `torch.onnx.export` of I2VGen-XL, and its fix (docs/export.md).
Each is exact: the rewritten graph computes what the original module does.

1. the UNet's `AdaptiveAvgPool2d((32, 32))` becomes `ExactAdaptiveAvgPool2d`, in the exported copy only
   (`for_export`);
2. `aten.repeat_interleave.self_int` with a symbolic count gets our own translation (`CUSTOM_TRANSLATIONS`).

The other two obstacles are the exporter's settings (`i2v.export.onnx_export`): `dynamic_shapes` with an entry
for every forward argument, and the dynamo exporter for every part (the CLIP causal mask is a TorchScript
exporter problem that then does not arise).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import onnx
import torch
from onnxscript import opset18 as op
from torch import nn

from i2v.model.modules import part_module

# ----------------------------------------------------------------------------------------------------------
# Rewrite 1: an adaptive average pool whose bins follow the runtime input size.


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
# Rewrite 2: repeat_interleave with a symbolic repeat count.


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


def for_export(pipe, name: str) -> nn.Module:
    """The part module to trace: the UNet's over a copy with the exact dynamic pool, the others as they are."""
    module = part_module(pipe, name)
    if name == "unet":
        module.unet = _with_exact_pooling(module.unet)
    return module
