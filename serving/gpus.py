"""Which GPUs a server will see, asked of the NVIDIA driver, not of torch: the launcher stays light and does not
initialise CUDA in its own process."""

from __future__ import annotations

import re
import shutil
import subprocess

NVIDIA_SMI_TIMEOUT_S = 15


def count_gpus() -> int:
    """GPUs the NVIDIA driver lists (`nvidia-smi -L`); 0 without nvidia-smi or when it fails (no driver).

    nvidia-smi comes with the driver, and in a container the NVIDIA runtime mounts it with the GPUs it grants
    (the `utility` capability, on by default in NVIDIA's images), so it lists exactly the container's GPUs.
    /dev/nvidia* nodes were not chosen: they can exist without a working driver, and their numbers are the
    driver's minor numbers, not CUDA's device ids. torch was not chosen: importing it costs seconds and memory,
    and `torch.cuda` would initialise CUDA in the launcher for nothing.
    """
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return 0
    try:
        result = subprocess.run(
            [nvidia_smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return gpus_listed(result.stdout) if result.returncode == 0 else 0


def gpus_listed(nvidia_smi_list: str) -> int:
    """The GPUs in `nvidia-smi -L` output: one "GPU <n>: <name> (UUID: ...)" line each (MIG lines are indented)."""
    return sum(1 for line in nvidia_smi_list.splitlines() if re.match(r"GPU \d+:", line))


def visible_gpu_ids(gpu_count: int, cuda_visible_devices: str | None) -> tuple[int, ...]:
    """The CUDA device ids a process sees: `gpu_count` GPUs, narrowed by CUDA_VISIBLE_DEVICES when it is set.

    CUDA renumbers the devices it is shown from 0, and stops at the first entry that names no device ("" or
    "-1" hide them all); entries are indexes or GPU-/MIG- UUIDs.
    """
    if cuda_visible_devices is None:
        return tuple(range(gpu_count))
    shown = 0
    for entry in cuda_visible_devices.split(","):
        entry = entry.strip()
        if not ((entry.isdigit() and int(entry) < gpu_count) or entry.startswith(("GPU-", "MIG-"))):
            break
        shown += 1
    return tuple(range(min(shown, gpu_count)))
