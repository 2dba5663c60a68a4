"""What the serving loop must know about the exported model, written by `i2v export` as `model_info.json`.

The BLS does not load the diffusers modules; the few numbers it needs from their configs travel in this file
beside the tokenizer, the scheduler config and the CLIP image processor config. A repository whose parts are
TensorRT engines also says which request shapes the engines were built for (`supported_shapes`), so that a
request outside them is refused before any part runs, with the supported list, rather than failing inside an
engine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from i2v.params import GenerationParams, InvalidParameterError, model_defaults, parameter

MODEL_INFO_FILE = "model_info.json"
# The models `i2v export` and `i2v bench` build themselves, with random weights (`i2v.export.sources`): the tiny
# one for the CPU, the tests and the demo; the full-size architecture for measuring on a GPU
TINY_MODEL, FULL_SIZE_RANDOM_MODEL = "tiny", "full-size-random"
DEFAULT_REPOSITORY = Path("model_repository")  # where `i2v export` writes and `i2v serve` reads
# What can serve the part models: ONNX Runtime or the PyTorch modules in a Python-backend model (the embedded
# server has these two), or native TensorRT engines (NVIDIA's Triton image).
RUNTIMES = ("onnxruntime", "torch", "tensorrt")
DEFAULT_RUNTIME = RUNTIMES[0]  # `i2v export` without --runtime: what the embedded server serves on any machine
# How the torch runtime's compiled parts (the UNet) run: torch.compile modes ("reduce-overhead" adds CUDA graphs,
# one per input shape, a request keeping its shapes for all its steps; "max-autotune" also tunes kernels, slow
# to compile), or "cuda-graphs": the eager module replayed from CUDA graphs without TorchInductor (captured in
# seconds; `i2v.model.modules.CudaGraphs`).
TORCH_COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "cuda-graphs")
NO_COMPILE = TORCH_COMPILE_MODES[0]  # eager: the default, and the only mode of the other runtimes' parts


MAX_DECODE_CHUNK_SIZE = 8  # the VAE decoder's largest batch by default (frames decoded per call)


def request_frame_range() -> tuple[int, int]:
    """The num_frames range a request may ask for (the parameter table's)."""
    low, high = parameter("num_frames").range
    return int(low), int(high)


@dataclass(frozen=True)
class SupportedShapes:
    """The request shapes a model's engines cover: one table drives the TensorRT optimization profiles, the
    `config.pbtxt` dims and this server-side check (see `i2v.export.profiles`)."""

    resolutions: tuple[tuple[int, int], ...]  # (height, width) pixel pairs, each one optimization profile
    num_frames: tuple[int, int] = field(default_factory=request_frame_range)  # every profile's frame axis
    max_decode_chunk_size: int = MAX_DECODE_CHUNK_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolutions", tuple((int(h), int(w)) for h, w in self.resolutions))
        object.__setattr__(self, "num_frames", tuple(int(n) for n in self.num_frames))
        if not self.resolutions:
            raise ValueError("supported shapes need at least one resolution")
        low, high = self.num_frames
        if not 1 <= low <= high:
            raise ValueError(f"num_frames must be a range (low, high) with 1 <= low <= high, got {self.num_frames}")
        if self.max_decode_chunk_size < 1:
            raise ValueError(f"max_decode_chunk_size must be at least 1, got {self.max_decode_chunk_size}")

    def describe(self) -> str:
        """'512x512, 512x896, ... (frames 8-32)': the list an error message shows."""
        sizes = ", ".join(f"{h}x{w}" for h, w in self.resolutions)
        return f"{sizes} (frames {self.num_frames[0]}-{self.num_frames[1]})"

    def check(self, params: GenerationParams) -> None:
        """Raise `InvalidParameterError` naming the first request dimension the engines were not built for."""
        where = "is not supported by this model's TensorRT engines"
        if (params.height, params.width) not in self.resolutions:
            raise InvalidParameterError(
                f"height x width {params.height}x{params.width} {where}; supported: {self.describe()}"
            )
        low, high = self.num_frames
        if not low <= params.num_frames <= high:
            raise InvalidParameterError(f"num_frames {params.num_frames} {where}; supported: {low}-{high}")
        if params.decode_chunk_size > self.max_decode_chunk_size:
            raise InvalidParameterError(
                f"decode_chunk_size {params.decode_chunk_size} {where}; supported: 1-{self.max_decode_chunk_size}"
            )

    @classmethod
    def from_dict(cls, data: dict) -> SupportedShapes:
        return cls(
            resolutions=tuple(tuple(r) for r in data["resolutions"]),
            num_frames=tuple(data.get("num_frames", request_frame_range())),
            max_decode_chunk_size=int(data.get("max_decode_chunk_size", MAX_DECODE_CHUNK_SIZE)),
        )


@dataclass
class ModelInfo:
    source: str  # the model's name as clients see it: "tiny", a hub id, or a local folder's name (never a path)
    vae_scale_factor: int  # pixels per latent cell
    vae_scaling_factor: float  # latents are scaled by this after encoding
    latent_channels: int
    size_multiple: int  # height and width must be multiples of this (VAE and UNet downsampling)
    text_len: int  # tokenizer max length
    defaults: dict = field(default_factory=dict)  # GenerationParams defaults for this model
    runtime: str = DEFAULT_RUNTIME  # what serves the part models: onnxruntime, torch or tensorrt
    # How the torch runtime's compiled parts (the UNet) run (TORCH_COMPILE_MODES; "none" for the other runtimes):
    # a compiled part runs the default request while it loads, and keeps that memory (`i2v.serving.admission`)
    torch_compile: str = NO_COMPILE
    supported_shapes: SupportedShapes | None = None  # None: any valid shape (ONNX Runtime, torch)
    # Triton's CUDA memory pool for the BLS's GPU transfers at these shapes (export's memory plan); the
    # launcher passes it as --cuda-memory-pool-byte-size on a GPU host. 0: Triton's default (64 MiB).
    cuda_memory_pool_bytes: int = 0
    # The sizes the server's memory estimate needs (`i2v.serving.admission`); 0: unknown, requests not checked.
    unet_channels: int = 0  # feature channels at the UNet's first level (full latent resolution)
    unet_heads: int = 0  # attention heads there
    vae_channels: int = 0  # feature channels at the VAE decoder's last level (full pixel resolution)

    def default_request(self) -> GenerationParams:
        """This model's default request: what an omitted parameter takes, and what Triton's warm-up sends a
        compiled UNet while it loads (its dims in the config, its memory in the BLS's count)."""
        return GenerationParams(**model_defaults(self.defaults))

    def check_supported(self, params: GenerationParams) -> None:
        """Refuse a request the part models cannot run (a shape outside the TensorRT profiles)."""
        if self.supported_shapes is not None:
            self.supported_shapes.check(params)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / MODEL_INFO_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ModelInfo:
        data = json.loads((Path(folder) / MODEL_INFO_FILE).read_text())
        if data.get("supported_shapes") is not None:
            data["supported_shapes"] = SupportedShapes.from_dict(data["supported_shapes"])
        return cls(**data)
