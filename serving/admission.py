"""Memory admission: a request the server has no memory for is refused before any part runs.

Without it, a large custom request reaches the allocator inside a part, which fails with its own words
("Failed to allocate memory for requested buffer of size 203004313600", in the UI) or, on a GPU, takes memory
other requests need. The estimate is made from the request's shapes and the model's sizes (`ModelInfo`), by
the term that dominates each runtime, calibrated by measurement:

- the UNet step, where the peak of a video is. With ONNX Runtime on a CPU the attention at the first level
  materialises its score matrices: `B x F x heads x T^2` floats for T latent positions; the UNet process's
  peak was 2.6-4.1 times that for the tiny model from 128x128x16 to 384x384x8 (measured: 33 MB at 8 MB of
  scores, 846 MB at 324 MB), so 3x plus the activations below. PyTorch's SDPA (the torch runtime) and
  TensorRT's fused attention keep no scores; their activations grow linearly: the full-size UNet in fp16 on
  an H200 held 2.5, 5.8 and 8.9 GB over its weights at 512x512, 768x768 and 704x1280 with 16 frames and
  guidance (benchmarks/results/h200-full-size-2026-11-26), about 31 feature maps of the first level's size,
  so 32 of them are counted: `32 x B x F x T x channels x bytes`;
- the VAE decode: about 8 feature maps of the decoder's last level at full resolution for each frame of a
  chunk (an estimate, not yet measured on its own);

plus 10% for what else is alive. The available memory is what the machine has free now (the CPU's
MemAvailable, bounded by the memory limits of the server's cgroup and its parents, v1 or v2, as a container's
or a Kubernetes pod's are; the GPU's free memory) plus what the parts hold from earlier requests, or
`I2V_MEMORY_BUDGET_BYTES` where an operator states it. The parts' allocators keep what a request took (ONNX
Runtime's arena, PyTorch's caching allocator on a GPU) and use it again for the next: a 512x512x8 request
left the tiny model's parts 5.4 GB larger, so against free memory alone a request needing more than what was
left after it, the same one included, was refused from then on. What they hold is counted as the largest
estimate admitted since the last allocation failure (after one they give memory back), and from the start
what a compiled UNet took for its warm-up request while it loaded (`HeldMemory`); not for PyTorch on a CPU,
whose allocator returns large blocks to the system when freed. TensorRT engines are not checked here:
their execution contexts were allocated for the largest profile when the model loaded
(`i2v.export.memory_plan`).
"""

from __future__ import annotations

import os

from i2v.model.info import ModelInfo
from i2v.params import GenerationParams, InvalidParameterError, parameter
from i2v.serving.host_memory import cpu_available_bytes

BUDGET_ENV = "I2V_MEMORY_BUDGET_BYTES"
SCORES_FACTOR = 3.0  # ONNX Runtime's UNet peak over its attention scores (measured 2.6-4.1 on the tiny model)
FEATURE_MAPS = 32  # first-level feature maps alive in a UNet step (measured about 31, full-size fp16)
VAE_FEATURE_MAPS = 8  # full-resolution feature maps alive per decoded frame (estimated)
HEADROOM = 1.1
GB = 1e9
# torch.compile modes (`i2v.model.info.TORCH_COMPILE_MODES`) whose CUDA graphs keep a memory pool of their own
GRAPH_MODES = ("cuda-graphs", "reduce-overhead")


class TooLargeError(InvalidParameterError):
    """The request needs more memory than the server has: asking for less is the remedy, not retrying."""


def request_bytes(info: ModelInfo, params: GenerationParams, *, gpu: bool) -> int:
    """The memory one request needs at its peak, by the model above; 0 where the model gives no sizes."""
    if not info.unet_channels or info.runtime == "tensorrt":
        return 0
    return int(HEADROOM * max(unet_step_bytes(info, params, gpu=gpu), vae_decode_bytes(info, params, gpu=gpu)))


def unet_step_bytes(info: ModelInfo, params: GenerationParams, *, gpu: bool) -> int:
    """One UNet step's activations: the first level's feature maps, and ONNX Runtime's attention scores."""
    positions = (params.height // info.vae_scale_factor) * (params.width // info.vae_scale_factor)
    step = FEATURE_MAPS * params.batch * params.num_frames * positions * info.unet_channels * _element(info, gpu)
    if info.runtime == "onnxruntime":
        step += SCORES_FACTOR * params.batch * params.num_frames * info.unet_heads * positions**2 * 4
    return int(step)


def vae_decode_bytes(info: ModelInfo, params: GenerationParams, *, gpu: bool) -> int:
    """One decoded chunk's full-resolution feature maps."""
    pixels = params.height * params.width
    return VAE_FEATURE_MAPS * params.decode_chunk_size * info.vae_channels * pixels * _element(info, gpu)


def _element(info: ModelInfo, gpu: bool) -> int:
    return 2 if gpu and info.runtime == "torch" else 4  # fp16 on a GPU, fp32 on a CPU and in ONNX Runtime


class HeldMemory:
    """What the parts keep from earlier requests and can use for the next one, as the BLS counts it: the largest
    estimate that reached the parts since the last allocation failure (after one the part that failed gives its
    memory back), and a compiled UNet's warm-up. Triton sends a compiled UNet the model's default request while
    it loads (its config's `model_warmup`); on a GPU that step's memory stays with the part: in PyTorch's
    cache, which any later call can use and an allocation failure empties, or for CUDA graphs (`GRAPH_MODES`)
    in their pool, which only a replay of a captured shape uses (a new shape's capture runs eagerly first; a
    LoRA runs the module itself) and which outlives a failure. Uncounted, the default request itself was
    refused on a GPU whose free memory after loading was less than it needs."""

    def __init__(self, info: ModelInfo, device) -> None:
        self.info = info
        # PyTorch on a CPU gives large blocks back when they are freed: nothing to count there
        self.keeps = device.type == "cuda" or info.runtime == "onnxruntime"
        self.admitted = 0
        self.warm_up = 0
        self.warm_up_shape = None
        if device.type == "cuda" and info.runtime == "torch" and info.torch_compile != "none" and info.unet_channels:
            warm_up = info.default_request()
            self.warm_up = int(HEADROOM * unet_step_bytes(info, warm_up, gpu=True))
            self.warm_up_shape = _unet_shape(warm_up)

    def for_request(self, params: GenerationParams, lora: bool = False) -> int:
        """What this request can count on besides the free memory."""
        if not self.keeps:
            return 0
        graphs = self.info.torch_compile in GRAPH_MODES
        if graphs and (lora or _unet_shape(params) != self.warm_up_shape):
            return self.admitted
        return max(self.admitted, self.warm_up)

    def ran(self, needed: int) -> None:
        """A request with this estimate reached the parts: their allocators may keep that much."""
        self.admitted = max(self.admitted, needed)

    def failed(self) -> None:
        """An allocation failed: the part emptied PyTorch's cache or made a new ONNX Runtime session."""
        self.admitted = 0
        if self.info.torch_compile not in GRAPH_MODES:
            self.warm_up = 0


def _unet_shape(params: GenerationParams) -> tuple[int, ...]:
    return params.batch, params.num_frames, params.height, params.width


def available_bytes(device, held: int = 0) -> int:
    """What this server may use now: the stated budget, else the device's free memory plus `held`, what the
    parts keep from earlier requests and use again."""
    if os.environ.get(BUDGET_ENV):
        return int(float(os.environ[BUDGET_ENV]))
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0] + held
    return cpu_available_bytes() + held


def check_memory(info: ModelInfo, params: GenerationParams, device, held: int = 0) -> int:
    """Raise `TooLargeError` naming what the request needs, what is free, and the largest request that fits;
    `held`: what the parts keep from earlier requests and can use for this one (`HeldMemory`; not counted
    against a stated budget). Returns the estimate (0 where the model gives no sizes)."""
    needed = request_bytes(info, params, gpu=device.type == "cuda")
    if not needed:
        return 0
    free = available_bytes(device, held)
    if needed <= free:
        return needed
    where = "GPU" if device.type == "cuda" else "memory"
    raise TooLargeError(
        f"{params.height}x{params.width} with {params.num_frames} frames is too large for this server: it needs "
        f"about {needed / GB:.1f} GB and {free / GB:.1f} GB of {where} is free; {fits(info, params, free, device)}"
    )


def fits(info: ModelInfo, params: GenerationParams, free: int, device) -> str:
    """The largest request like this one that fits: the same aspect ratio scaled down, or fewer frames."""
    gpu = device.type == "cuda"
    options = []
    step = info.size_multiple
    scale = 0.95
    while scale > 0:
        height = max(step, int(params.height * scale) // step * step)
        width = max(step, int(params.width * scale) // step * step)
        if request_bytes(info, params.replace(height=height, width=width), gpu=gpu) <= free:
            options.append(f"{height}x{width} at {params.num_frames} frames")
            break
        if height == step and width == step:
            break
        scale -= 0.05
    low = int(parameter("num_frames").range[0])
    frames = next(
        (
            f
            for f in range(params.num_frames - 1, low - 1, -1)
            if request_bytes(info, params.replace(num_frames=f), gpu=gpu) <= free
        ),
        None,
    )
    if frames is not None:
        options.append(f"{params.height}x{params.width} at {frames} frames")
    if not options:
        return "no request of this size fits now"
    return "the largest that fits: " + ", or ".join(options)
