"""The five parts as torch modules: each takes exactly its spec's inputs (in order) and returns its outputs.

The ONNX export traces these modules, its check compares the graphs with them, and the `torch` runtime serves
them; so the graph, the Triton config and the serving loop all read from one table (`i2v.model.parts`).

The `torch` runtime saves each part's pipeline component into the repository with `save_pretrained`
(`<part>/1/weights/`: config + safetensors; the VAE encoder and decoder each hold a copy of the VAE, so every
model folder stands alone for Triton's load/unload) and loads it back with `from_pretrained`. On CUDA the
modules run in fp16 (or the dtype the config asks for) with PyTorch's scaled-dot-product attention (diffusers'
`AttnProcessor2_0`, transformers' `attn_implementation="sdpa"`); on CPU in fp32.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import torch
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.unets import I2VGenXLUNet
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModelWithProjection

from i2v.model.info import NO_COMPILE, TORCH_COMPILE_MODES
from i2v.model.parts import PART_NAMES, SIZE_FREE_SPECS

# The class that loads each pipeline component (`PartSpec.component`).
COMPONENT_CLASSES: dict[str, type] = {
    "text_encoder": CLIPTextModel,
    "image_encoder": CLIPVisionModelWithProjection,
    "vae": AutoencoderKL,
    "unet": I2VGenXLUNet,
}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # PyTorch's own variable: where TorchInductor keeps what it compiled


def user_cache_dir() -> Path:
    """This project's folder in the user's cache, `$XDG_CACHE_HOME/i2v` (else `~/.cache/i2v`): what saves minutes
    the next time (TensorRT's timing cache, TorchInductor's compiled graphs), kept on a volume in deployments."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "i2v"


def use_compile_cache() -> None:
    """TorchInductor's caches (graphs, kernels) in `user_cache_dir()/torch-compile` unless TORCHINDUCTOR_CACHE_DIR
    names a folder: a restarted server or another replica then loads the UNet compiled before, in seconds, instead
    of compiling it again. Where that folder cannot be made, Inductor keeps its own default in /tmp."""
    if INDUCTOR_CACHE_ENV not in os.environ:
        folder = user_cache_dir() / "torch-compile"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        os.environ[INDUCTOR_CACHE_ENV] = str(folder)


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


PART_MODULES: dict[str, type[nn.Module]] = {
    "text_encoder": TextEncoderPart,
    "image_encoder": ImageEncoderPart,
    "vae_encoder": VaeEncoderPart,
    "unet": UNetPart,
    "vae_decoder": VaeDecoderPart,
}


def part_module(pipe, name: str) -> nn.Module:
    """The torch module of one part over the pipeline's own component (shared, not copied), in eval mode."""
    if name not in PART_MODULES:
        raise ValueError(f"part must be one of {', '.join(PART_NAMES)}, got {name!r}")
    return PART_MODULES[name](getattr(pipe, SIZE_FREE_SPECS[name].component)).eval()


def save_part_weights(pipe, part: str, folder: Path) -> Path:
    """Write the component `part` runs with `save_pretrained` (safetensors)."""
    getattr(pipe, SIZE_FREE_SPECS[part].component).save_pretrained(folder)
    return Path(folder)


def load_part_module(
    part: str, folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """The part's torch module (its component loaded from `folder`), on `device` in `dtype`, in eval mode."""
    component_name = SIZE_FREE_SPECS[part].component
    cls = COMPONENT_CLASSES[component_name]
    kwargs = {"attn_implementation": "sdpa"} if cls in (CLIPTextModel, CLIPVisionModelWithProjection) else {}
    component = cls.from_pretrained(folder, **kwargs)
    if hasattr(component, "set_attn_processor"):  # diffusers: SDPA, whatever the saved config preferred
        component.set_attn_processor(AttnProcessor2_0())
    module = part_module(SimpleNamespace(**{component_name: component}), part)
    return module.to(device=torch.device(device), dtype=dtype).eval()


CapturedGraph = tuple[torch.cuda.CUDAGraph, list[torch.Tensor], tuple[torch.Tensor, ...]]  # graph, inputs, outputs


class CudaGraphs(nn.Module):
    """`module` replayed from a CUDA graph captured at the first call of each input shapes (inputs not on CUDA run
    it eagerly). A UNet forward is thousands of kernel launches: eager, the GPU waits on Python at the start of
    every call that follows a synchronisation, as each served call does (its outputs leave the process); one
    replay is one launch. The graphs share one memory pool, which is safe as calls never overlap (one model
    instance runs one request at a time) and each call's outputs are copied out of the pool before it returns.
    At most `capacity` graphs are kept (the least recently used goes first): a runtime that takes any size
    would otherwise hold a graph for every size ever asked for. The module's weights are read where they lie at
    capture: a LoRA must run `module` itself, not the graph."""

    def __init__(self, module: nn.Module, warmup_calls: int = 2, capacity: int = 8) -> None:
        super().__init__()
        self.module, self.warmup_calls, self.capacity = module, warmup_calls, max(capacity, 1)
        self.graphs: OrderedDict[tuple, CapturedGraph] = OrderedDict()  # by input shapes, least recent first
        self.pool = None
        # The warm-ups' stream, one for every capture: PyTorch keeps a cuBLAS workspace per stream for the
        # process's life (32 MiB on a Hopper GPU), so a new stream per capture held one more each time
        self.warmup_stream: torch.cuda.Stream | None = None

    def forward(self, *inputs: torch.Tensor):
        if not inputs[0].is_cuda:
            return self.module(*inputs)
        key = tuple((t.shape, t.dtype, t.device) for t in inputs)
        if key in self.graphs:
            self.graphs.move_to_end(key)
        else:
            while len(self.graphs) >= self.capacity:
                self.graphs.popitem(last=False)
            self.graphs[key] = self._capture(inputs)
        graph, static_inputs, static_outputs = self.graphs[key]
        for static, given in zip(static_inputs, inputs, strict=True):
            static.copy_(given)
        graph.replay()
        outputs = tuple(o.clone() for o in static_outputs)
        return outputs if len(outputs) > 1 else outputs[0]

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> CapturedGraph:
        """Warm-up calls on a side stream (cuDNN and cuBLAS choose their algorithms), then the capture, as
        PyTorch's CUDA graphs notes do it."""
        static_inputs = [t.clone() for t in inputs]
        device = inputs[0].device
        if self.warmup_stream is None:
            self.warmup_stream = torch.cuda.Stream(device=device)
        self.warmup_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(self.warmup_stream):
            for _ in range(self.warmup_calls):
                self.module(*static_inputs)
        torch.cuda.current_stream(device).wait_stream(self.warmup_stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = self.module(*static_inputs)
        self.pool = graph.pool()
        # What the warm-up cached stays with its stream, of use to no call but the next capture's warm-up, and
        # counts as used to the server's memory check: given back; the graphs' pool stays
        torch.cuda.empty_cache()
        return graph, static_inputs, outputs if isinstance(outputs, tuple) else (outputs,)


def compile_part(module: nn.Module, mode: str) -> nn.Module:
    """The module under `torch.compile` (TorchInductor) in `mode`, in CUDA graphs for "cuda-graphs", or as it is
    for "none". Compilation (capture) happens at the first call of each new input shape; the repository's
    warm-up request makes that the load, and the compile cache (`use_compile_cache`) makes it fast the next time."""
    if mode not in TORCH_COMPILE_MODES:
        raise ValueError(f"torch compile mode must be one of {', '.join(TORCH_COMPILE_MODES)}, got {mode!r}")
    if mode == NO_COMPILE:
        return module
    if mode == "cuda-graphs":
        return CudaGraphs(module)
    use_compile_cache()
    return torch.compile(module, mode=None if mode == "default" else mode)


def run_part_module(module: nn.Module, inputs: list[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Floating inputs in the module's dtype, outputs back as float32 (the part's declared output type)."""
    device = next(module.parameters()).device
    feeds = [t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for t in inputs]
    with torch.inference_mode():
        outputs = module(*feeds)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return tuple(o.float().contiguous() for o in outputs)
