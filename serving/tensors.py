"""Tensors across the Python backend's boundary, for the BLS and the part runner alike.

- `instance_device`: a `KIND_GPU` instance runs on its GPU or fails to load, naming the cause; it never falls
  back to the CPU (a full-size model there would take hours per video and look like a hang), nor runs on a
  cuDNN its PyTorch cannot use (older than the one it was built with, or another major version: a system
  folder early on `LD_LIBRARY_PATH` puts one there; PyTorch checks only when asked, and its convolutions run
  on that library meanwhile).
- `to_triton`: torch tensors to Triton tensors, by DLPack on the GPU and through numpy on the CPU. A GPU
  tensor is handed over only once the device has finished all work queued so far: the consumer (another
  process) reads it on its own stream, python_backend synchronises nothing for a DLPack capsule, and a BLS
  `exec()` passes the pointer on as it is (r24.10 and main alike), so work still queued on any stream (the
  current one, a side stream, CUDA graphs, torch.compile) could still be writing it.
- `to_torch`: Triton tensors to torch tensors on the caller's device, wherever they arrived.
"""

from __future__ import annotations

import os

import torch
import triton_python_backend_utils as pb_utils


class CudaUnavailableError(RuntimeError):
    """A GPU instance was configured, but PyTorch cannot use CUDA here, or not with its own libraries."""


def instance_device(args: dict) -> torch.device:
    """The device of this model instance: its GPU for `KIND_GPU`, the CPU otherwise."""
    if args["model_instance_kind"] != "GPU":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise CudaUnavailableError(
            f"{args['model_name']}: the instance is KIND_GPU, but PyTorch {torch.__version__} (built for CUDA "
            f"{torch.version.cuda or 'none: a CPU-only build'}) cannot use CUDA here: the driver is missing or "
            "older than this CUDA build (compare `nvidia-smi` with torch.version.cuda), or no GPU is visible. "
            "Install a torch build the driver supports, or export with --device cpu"
        )
    try:
        torch.backends.cudnn.version()  # loads cuDNN and compares it with the build's
    except RuntimeError as error:
        raise CudaUnavailableError(
            f"{args['model_name']}: PyTorch {torch.__version__} loaded a cuDNN it cannot use ({error}). "
            "A folder early on LD_LIBRARY_PATH holds another cuDNN (LD_LIBRARY_PATH="
            f"{os.environ.get('LD_LIBRARY_PATH', '')!r}): start the server without it there"
        ) from None
    return torch.device(f"cuda:{args['model_instance_device_id']}")


def to_triton(tensors: dict[str, torch.Tensor]) -> list:
    """Triton tensors of the same names; GPU ones after every stream of their device has finished."""
    contiguous = {name: value.contiguous() for name, value in tensors.items()}
    for device in {value.device for value in contiguous.values() if value.is_cuda}:
        torch.cuda.synchronize(device)
    return [
        pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(value))
        if value.is_cuda
        else pb_utils.Tensor(name, value.numpy())
        for name, value in contiguous.items()
    ]


def to_torch(tensor, device: torch.device) -> torch.Tensor:
    """A Triton tensor as a torch tensor on `device` (CPU data is copied out of the shared-memory buffer)."""
    if tensor.is_cpu():
        return torch.from_numpy(tensor.as_numpy().copy()).to(device)
    return torch.from_dlpack(tensor.to_dlpack()).to(device)
