"""The ways of making one video that the harness compares, each behind the same small interface.

- `served-<runtime>`: the real product: a Triton server on a repository exported for that runtime (onnxruntime,
  torch, tensorrt), called through the gRPC client;
- `onnxruntime` / `torch`: the same sampling loop (`VideoGenerator`) in this process over ONNX Runtime sessions
  or the PyTorch part modules: the served path minus Triton, so served/in-process is the serving overhead;
- `torch-synced`: the torch loop synchronising the device after every part call, as the served path must;
  `torch-compile`, `torch-cuda-graphs`: its UNet under `torch.compile` or replayed from CUDA graphs (served
  the same way: `--served-runtimes torch-compile,torch-cuda-graphs`);
- `diffusers` (and `diffusers-compile`, its UNet under `torch.compile`): the plain `I2VGenXLPipeline`, the
  baseline a user would otherwise deploy; fp16 on a GPU.

Every runner's time ends with the video encoded as the server returns it (`encode_mp4`, stage `mp4_encode`):
the ratios compare one deliverable (where PyAV is installed; without it no runner encodes, and none serves).
In-process runners on a GPU report `torch.cuda.max_memory_allocated` of each run (`Run.torch_gpu_mb`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2v.client import GenerationRequest, I2VError
from i2v.examples import LIGHTHOUSE_PROMPT
from i2v.model.info import NO_COMPILE
from i2v.model.modules import run_part_module
from i2v.model.repository_layout import part_graphs, pipeline_dir
from i2v.params import MP4_ENCODE_STAGE, GenerationParams
from i2v.serving.generator import VideoGenerator


@dataclass(frozen=True)
class GridPoint:
    height: int
    width: int
    frames: int
    steps: int

    @property
    def label(self) -> str:
        return f"{self.shape_label}f/{self.steps}s"

    @property
    def shape_label(self) -> str:
        return f"{self.height}x{self.width}x{self.frames}"

    def parameters(self, seed: int) -> dict:
        """The request parameters of one run at this point (everything else: the model's defaults)."""
        return {
            "prompt": LIGHTHOUSE_PROMPT,
            "height": self.height,
            "width": self.width,
            "num_frames": self.frames,
            "num_inference_steps": self.steps,
            "seed": seed,
        }


# Seconds a UNet call takes per step: inside the served `unet` model (Triton's counters), or `torch-synced`'s
# call alone; the rest of the step is the time between UNet calls
UNET_MODEL_STAGE = "unet_model_per_call"


@dataclass
class Run:
    seconds: float  # end to end, as the caller sees it
    timings: dict[str, float]  # per stage, where the runner reports them
    torch_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated, for in-process runners on a GPU


class Runner:
    name = ""
    pids: list[int]  # processes whose memory counts for this runner

    def run(self, image: Image.Image, point: GridPoint, seed: int) -> Run:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ServedRunner(Runner):
    """The embedded Triton server started on a repository, or (`url`) a server already running elsewhere,
    such as NVIDIA's Triton image serving TensorRT engines. A remote server's memory is not sampled. Each run
    also reports the UNet's time inside its own model per call (stage `unet_model_per_call`, from Triton's
    counters): the rest of a served step is the time between UNet calls."""

    def __init__(
        self,
        model_repository: Path | None = None,
        *,
        url: str | None = None,
        runtime: str | None = None,
        api_key: str | None = None,
    ):
        from i2v.client import I2VClient
        from i2v.model.info import ModelInfo
        from i2v.serving.triton_server import EmbeddedTritonServer

        self.server = None
        self.pids: list[int] = []
        if url is None:
            runtime = runtime or ModelInfo.load(pipeline_dir(model_repository)).runtime
            self.server = EmbeddedTritonServer(model_repository)
            self.server.start()
            url = self.server.endpoints.grpc_url
            self.pids = [self.server.pid]  # its process group (the Python stubs) is counted by the sampler
        self.name = f"served-{runtime or 'remote'}"
        self.url, self.api_key = url, api_key
        self.client = I2VClient(self.url, api_key=api_key)

    def request(self, image: Image.Image, point: GridPoint, seed: int) -> GenerationRequest:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return GenerationRequest(image=buffer.getvalue(), **point.parameters(seed))

    def run(self, image, point, seed):
        request = self.request(image, point, seed)  # a caller holds the image file: its PNG encode is not timed
        before = self.unet_counters()
        start = time.perf_counter()
        result = self.client.generate(request)
        seconds = time.perf_counter() - start
        after = self.unet_counters()
        timings = dict(result.timings)
        if before and after and after[0] > before[0]:
            timings[UNET_MODEL_STAGE] = (after[1] - before[1]) / (after[0] - before[0]) / 1e9
        return Run(seconds, timings)

    def unet_counters(self) -> tuple[int, int] | None:
        """Triton's own counters of the `unet` model: (calls, nanoseconds computing: its inputs, the model's
        process at work, its outputs; not the queue); None where the server does not tell (a gateway that
        keeps its statistics to itself)."""
        try:
            stats = self.client.model_statistics("unet")
        except I2VError:
            return None
        counters = [m["inference_stats"] for m in stats.get("model_stats", [])]
        calls = sum(int(c.get("compute_infer", {}).get("count", 0)) for c in counters)
        phases = ("compute_input", "compute_infer", "compute_output")
        return calls, sum(int(c.get(phase, {}).get("ns", 0)) for c in counters for phase in phases)

    def throughput(self, image, point, concurrency: int, requests: int) -> float:
        """Requests per second with `concurrency` clients sending `requests` in all."""
        from concurrent.futures import ThreadPoolExecutor

        from i2v.client import I2VClient

        def one(request: GenerationRequest) -> None:
            with I2VClient(self.url, api_key=self.api_key) as client:
                client.generate(request)

        batch = [self.request(image, point, seed) for seed in range(requests)]
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, batch))
        return requests / (time.perf_counter() - start)

    def close(self):
        self.client.close()
        if self.server is not None:
            self.server.stop()


class InProcessRunner(Runner):
    """The BLS's loop without Triton: `run_part` calls ONNX Runtime sessions or torch modules directly, the UNet
    module compiled in `compile_mode` (`i2v.model.info.TORCH_COMPILE_MODES`)."""

    def __init__(self, name: str, model_repository: Path, pipe, device: str = "cpu", compile_mode: str = NO_COMPILE):
        self.name = name
        self.pids = [os.getpid()]
        self.device = torch.device(device)
        if name == "onnxruntime":
            run_part = OnnxRuntimeParts(model_repository)
        else:
            dtype = half_precision_on_gpu(self.device)
            run_part = TorchParts(pipe, self.device, dtype, compile_mode, synchronize=name == "torch-synced")
        self.run_part = run_part
        self.generator = VideoGenerator(pipeline_dir(model_repository), run_part, self.device)

    def run(self, image, point, seed):
        params = GenerationParams(**point.parameters(seed))
        calls = getattr(self.run_part, "call_seconds", {})
        calls.clear()
        with cuda_peak(self.device) as peak:
            start = time.perf_counter()
            video = self.generator(image, params)
            encoded = timed_encode(video.frames, params.fps)
            seconds = time.perf_counter() - start
        timings = {**video.timings, **encoded}
        if calls.get("unet"):  # torch-synced: the UNet's call alone, as the served row's time inside its model
            timings[UNET_MODEL_STAGE] = sum(calls["unet"]) / len(calls["unet"])
        return Run(seconds, timings, peak.get("mb"))


class DiffusersRunner(Runner):
    """The plain pipeline, fp16 on a GPU; `compile=True` puts its UNet under `torch.compile`."""

    def __init__(self, pipe, device: str = "cpu", compile: bool = False):
        self.name = "diffusers-compile" if compile else "diffusers"
        self.device = torch.device(device)
        self.pipe = pipe.to(self.device, half_precision_on_gpu(self.device))
        self.pipe.set_progress_bar_config(disable=True)
        if compile:
            self.pipe.unet = torch.compile(self.pipe.unet)
        self.pids = [os.getpid()]

    def run(self, image, point, seed):
        with cuda_peak(self.device) as peak, torch.no_grad():
            start = time.perf_counter()
            output = self.pipe(
                prompt=LIGHTHOUSE_PROMPT,
                image=image,
                height=point.height,
                width=point.width,
                num_frames=point.frames,
                num_inference_steps=point.steps,
                generator=torch.Generator().manual_seed(seed),
                output_type="np",
            )
            frames = (output.frames[0] * 255).round().astype(np.uint8)  # as the product's loop rounds them
            encoded = timed_encode(frames, GenerationParams(**point.parameters(seed)).fps)
            seconds = time.perf_counter() - start
        return Run(seconds, encoded, peak.get("mb"))


def timed_encode(frames: np.ndarray, fps: int) -> dict[str, float]:
    """The frames encoded as the server encodes them, the stage's seconds as the server reports them; nothing
    where PyAV is not installed (a GPU host without the served path: no runner there encodes)."""
    if importlib.util.find_spec("av") is None:
        return {}
    from i2v.video import encode_mp4

    start = time.perf_counter()
    encode_mp4(frames, fps=fps)
    return {MP4_ENCODE_STAGE: time.perf_counter() - start}


def half_precision_on_gpu(device: torch.device) -> torch.dtype:
    """fp16 on a GPU (as served there), fp32 on a CPU (where fp16 is slow and not what the product runs)."""
    return torch.float16 if device.type == "cuda" else torch.float32


@contextlib.contextmanager
def cuda_peak(device: torch.device):
    """Synchronise around the block and put `torch.cuda.max_memory_allocated` (MiB) into the yielded dict."""
    peak: dict[str, float] = {}
    if device.type != "cuda":
        yield peak
        return
    torch.cuda.synchronize(device)
    # Give cached blocks back first: in-process runners share this process, whose GPU memory NVML samples
    # (the caching allocator's reserve only grows), so each run's NVML peak is then its own.
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    yield peak
    torch.cuda.synchronize(device)
    peak["mb"] = torch.cuda.max_memory_allocated(device) / 2**20


class OnnxRuntimeParts:
    """`run_part` over one ONNX Runtime session per part, read from a model repository."""

    def __init__(self, model_repository: Path):
        from i2v.serving.onnxruntime_session import open_session

        self.sessions = {name: open_session(graph) for name, graph in part_graphs(model_repository).items()}

    def __call__(self, name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        session = self.sessions[name]
        outputs = session.run(None, {k: np.ascontiguousarray(v.cpu().numpy()) for k, v in inputs.items()})
        return {o.name: torch.from_numpy(r) for o, r in zip(session.get_outputs(), outputs, strict=True)}


class TorchParts:
    """`run_part` over the PyTorch part modules (the ones the ONNX graphs are traced from); with `compile_mode`,
    the parts the spec marks `compiled` (the UNet) under torch.compile, as the served torch runtime does; with
    `synchronize`, the device finishes each call before the next is queued, as in the served path, where a part's
    outputs leave its process (so a step's launches no longer overlap the previous step's kernels), and each
    call's seconds are kept (`call_seconds`), the work queued before it finished first."""

    def __init__(
        self,
        pipe,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        compile_mode: str = NO_COMPILE,
        synchronize: bool = False,
    ) -> None:
        from i2v.model.modules import compile_part, part_module
        from i2v.model.parts import OUTPUT_NAMES, SIZE_FREE_SPECS

        self.output_names = OUTPUT_NAMES
        self.dtype = dtype
        self.synchronize = synchronize
        self.device = device
        self.call_seconds: dict[str, list[float]] = {}
        self.modules = {
            name: compile_part(
                part_module(pipe, name).to(device, dtype).eval(),
                compile_mode if SIZE_FREE_SPECS[name].compiled else NO_COMPILE,
            )
            for name in OUTPUT_NAMES
        }

    def __call__(self, name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.synchronize:
            outputs = run_part_module(self.modules[name], list(inputs.values()), self.dtype)
            return dict(zip(self.output_names[name], outputs, strict=True))
        synchronize = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        synchronize()
        start = time.perf_counter()
        outputs = run_part_module(self.modules[name], list(inputs.values()), self.dtype)
        synchronize()
        self.call_seconds.setdefault(name, []).append(time.perf_counter() - start)
        return dict(zip(self.output_names[name], outputs, strict=True))
