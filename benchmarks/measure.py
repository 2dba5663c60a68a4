"""What a run costs besides time: peak memory (RSS, GPU through NVML), UNet FLOPs, and the machine it ran on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import threading
import time
from pathlib import Path

from i2v.serving.processes import process_group_members


def with_group_members(pids: list[int]) -> set[int]:
    """These processes and the live members of their process groups (a Triton server and its Python stubs)."""
    members: set[int] = set(pids)
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    groups.discard(os.getpgid(0))  # our own group would count the test runner or shell too
    for pgid in groups:
        members.update(process_group_members(pgid))
    return members


def rss_mb(members: set[int]) -> float:
    """Resident memory of these processes, in MiB."""
    total_kb = 0
    for pid in members:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total_kb += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total_kb / 1024


class PeakMemory:
    """Sample memory in a thread while a block runs and keep the peaks: RSS of the processes, and where NVML
    sees a GPU, the GPU memory those processes hold (`gpu_mb`) and the whole device's use (`gpu_device_mb`:
    the fallback where a container's PID namespace hides the processes from NVML).

    The processes are looked up once a second, not at every sample: the sampler shares the cores with what it
    measures (it once ran `pgrep` every 50 ms, which alone made the served steps 8% slower on two cores)."""

    def __init__(self, pids: list[int], interval_s: float = 0.05, lookup_every_s: float = 1.0):
        self.pids, self.interval_s, self.lookup_every_s = pids, interval_s, lookup_every_s
        self._members: set[int] = set()
        self._looked_up = -float("inf")
        self.rss_mb = 0.0
        self.gpu_mb: float | None = None
        self.gpu_device_mb: float | None = None
        self._stop = threading.Event()
        self._nvml = _nvml_handle()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample_once()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sample_once()
            time.sleep(self.interval_s)

    def _sample_once(self) -> None:
        if time.monotonic() - self._looked_up >= self.lookup_every_s:
            self._members, self._looked_up = with_group_members(self.pids), time.monotonic()
        members = self._members
        self.rss_mb = max(self.rss_mb, rss_mb(members))
        if self._nvml is None:
            return
        import pynvml

        device = pynvml.nvmlDeviceGetMemoryInfo(self._nvml).used / 2**20
        self.gpu_device_mb = max(self.gpu_device_mb or 0.0, device)
        held = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(self._nvml) if p.pid in members]
        if held and all(h is not None for h in held):
            self.gpu_mb = max(self.gpu_mb or 0.0, sum(held) / 2**20)


def _nvml_handle():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no nvidia-ml-py, no driver, no GPU: GPU memory is simply not reported
        return None


# Dense fp16/bf16 tensor-core peak (TFLOP/s, no sparsity) from NVIDIA's data sheets: the ceiling a UNet step
# is measured against. A GPU not listed gets no fraction, only the achieved TFLOP/s.
GPU_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 80GB HBM3": 989.4,  # SXM
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
}


def gpu_peak_tflops(gpu_name: str | None) -> float | None:
    """The data-sheet fp16 peak of a GPU named as `torch.cuda.get_device_name` names it, if known."""
    if not gpu_name:
        return None
    matches = [key for key in GPU_PEAK_TFLOPS if key in gpu_name]
    return GPU_PEAK_TFLOPS[max(matches, key=len)] if matches else None


def unet_flops_per_step(unet_config: dict, height: int, width: int, frames: int, vae_scale: int = 8) -> float:
    """FLOPs of one guided UNet call (batch 2), counted by PyTorch on the meta device: no memory, no GPU."""
    import torch
    from diffusers.models.unets import I2VGenXLUNet
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = I2VGenXLUNet(**{k: v for k, v in unet_config.items() if not k.startswith("_")})
        h, w, c = height // vae_scale, width // vae_scale, unet.config.in_channels
        sample = torch.randn(2, c, frames, h, w)
        inputs = dict(
            fps=torch.full((2,), 16.0),
            image_latents=torch.randn(2, c, frames, h, w),
            image_embeddings=torch.randn(2, 1, unet.config.cross_attention_dim),
            encoder_hidden_states=torch.randn(2, 77, unet.config.cross_attention_dim),
        )
        with FlopCounterMode(display=False) as counter:
            unet(sample, torch.tensor([981.0]), **inputs)
    return float(counter.get_total_flops())


def frame_psnr(frames, reference) -> list[float]:
    """Peak signal-to-noise ratio of each uint8 frame against the reference's, in dB (inf where equal)."""
    import numpy as np

    a, b = np.asarray(frames, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"frames {a.shape} and reference {b.shape} differ in shape")
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    return [float("inf") if m == 0 else float(10 * np.log10(255.0**2 / m)) for m in mse]


def machine_info() -> dict:
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "packages": {},
    }
    for package in ("torch", "diffusers", "transformers", "onnxruntime", "onnx", "nvidia-pytriton", "tritonclient"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info["packages"][package] = importlib.metadata.version(package)
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
