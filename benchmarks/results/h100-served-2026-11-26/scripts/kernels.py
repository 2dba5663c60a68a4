"""Next GPU run: which kernels of the UNet forward run slower inside the Python-backend stub than in a plain
process (the served UNet step 1.05-1.07x the in-process one on an H100, CUDA graphs or not). Profiles three UNet
calls of a served request (a profiling subclass of the part runner) in a stub started as the launcher starts
it, and three in this process, both while the server is up and idle (its processes hold CUDA contexts on the
GPU) and after it stopped, and in this process with 3 and 6 ms idle before each call (6: as served steps
come), then prints per kernel the device time in each, the synchronised wall time per call, and the
environment of each (CUDA libraries mapped, CUDA/cuBLAS/torch variables, torch's backend flags, cuDNN's
version or the error checking it). A side that fails is reported and the others still print (the 2026-11-26
run lost every side to one: a stub with the system's library folder first loaded the image's cuDNN 9.14 and
torch refused it when asked its version). argv: model (tiny / full-size-random), height width frames, output
folder."""

import json
import os
import sys
import time
from pathlib import Path

import torch

from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest
from i2v.examples import lighthouse_image
from i2v.export.pipeline import export_model_repository
from i2v.export.sample_inputs import part_inputs
from i2v.export.sources import load_pipeline
from i2v.model.modules import load_part_module, run_part_module
from i2v.serving.triton_server import EmbeddedTritonServer

DEVICE = "gpu" if torch.cuda.is_available() else "cpu"

REPORT = """
import json, os, re, torch

# CUDA kernels on a GPU; a CPU dry run records CPU operators (no device times: empty tables)
ACTIVITIES = [getattr(torch.profiler.ProfilerActivity, "CUDA" if torch.cuda.is_available() else "CPU")]


def environment():
    maps = open("/proc/self/maps").read()
    names = r"(/\\S*(?:cuda|cublas|cudnn|nvrtc|nvJit|cupti|nvidia)\\S*\\.so[.0-9]*)"
    libraries = sorted(set(re.findall(names, maps)))
    prefixes = r"(CUDA|CUBLAS|CUDNN|TORCH|PYTORCH|NVIDIA|OMP|LD_)"
    variables = {k: v for k, v in os.environ.items() if re.match(prefixes, k)}
    try:
        cudnn = torch.backends.cudnn.version()
    except RuntimeError as error:  # a cuDNN other than torch's own was loaded
        cudnn = str(error)[:200]
    flags = {
        "cudnn": [torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, cudnn],
        "tf32": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32],
        "fp16_reduced": torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        "sdp": [torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
                torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.math_sdp_enabled()],
        "blas": str(torch.backends.cuda.preferred_blas_library()),
        "memory_gb": [torch.cuda.memory_allocated() / 2**30, torch.cuda.mem_get_info()[0] / 2**30]
        if torch.cuda.is_available() else None,
    }
    return {"libraries": libraries, "variables": variables, "flags": flags, "gpu": gpu_state()}


def gpu_state():
    # clocks, temperature, power and throttle reasons right after the measurement: a slower side on a hotter
    # or throttled GPU is not a slower process
    import subprocess

    fields = "clocks.sm,clocks.mem,temperature.gpu,power.draw,pstate,clocks_throttle_reasons.active"
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:
        return repr(exc)


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def kernel_table(profile):
    table = {}
    for event in profile.key_averages():
        device_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if device_us and not event.key.startswith("aten::"):
            table[event.key] = [device_us, event.count]
    return table
"""

SHIM = (
    """
import json
import time
import torch
import triton_python_backend_utils as pb_utils
from i2v.serving.part_runner import TritonPythonModel as Base
"""
    + REPORT
    + """

class TritonPythonModel(Base):
    calls = 0

    def execute(self, requests):
        type(self).calls += 1
        if type(self).calls not in (12, 15):  # the second request's steps 2 to 4 (10 steps a request)
            return super().execute(requests)
        if type(self).calls == 12:
            self.profile = torch.profiler.profile(activities=ACTIVITIES)
            self.profile.__enter__()
            return super().execute(requests)
        self.profile.__exit__(None, None, None)
        report = {"kernels": kernel_table(self.profile), "environment": environment()}
        with open("/tmp/stub-kernels.json", "w") as f:
            json.dump(report, f)
        walls = []
        for _ in range(3):  # the same call again, unprofiled, synchronised (the last one answers)
            synchronize()
            start = time.perf_counter()
            responses = super().execute(requests)
            synchronize()
            walls.append(1e3 * (time.perf_counter() - start))
        with open("/tmp/stub-walls.json", "w") as f:
            json.dump(walls, f)
        return responses
"""
)


def main() -> None:
    model, height, width, frames, out = sys.argv[1], *map(int, sys.argv[2:5]), Path(sys.argv[5])
    exec(REPORT, globals())
    repository = out / "repository"
    if not (repository / "unet").exists():
        export_model_repository(model, repository, check=False, runtime="torch", device=DEVICE)
    (repository / "unet" / "1" / "model.py").write_text(SHIM)
    with lighthouse_image() as path:
        image = Path(path).read_bytes()
    request = GenerationRequest(
        image=image, prompt="a lighthouse", height=height, width=width, num_frames=frames, num_inference_steps=10
    )
    cuda = torch.cuda.is_available()  # a CPU dry run profiles nothing, but runs every line
    dtype = torch.float16 if cuda else torch.float32
    unet = load_part_module("unet", repository / "unet" / "1" / "weights", "cuda" if cuda else "cpu", dtype)
    pipe = load_pipeline(model)
    inputs = part_inputs(pipe, "unet", batch=2, height=height, width=width, frames=frames).values()
    feeds = [torch.from_numpy(a).to(unet.unet.device) for a in inputs]

    def plain(gap_ms: float = 0.0) -> dict:
        """Three profiled forwards in this process, then three timed ones (synchronised); with `gap_ms`, the
        device idles that long before each (the served step's time outside the UNet call: on the CPU the
        forward after such a gap is slower, with cold caches and sleeping threads; on a GPU, to be seen)."""
        for _ in range(3):
            run_part_module(unet, feeds, dtype)
        with torch.profiler.profile(activities=ACTIVITIES) as profile:  # noqa: F821 (from REPORT)
            for _ in range(3):
                synchronize()  # noqa: F821 (from REPORT)
                time.sleep(gap_ms / 1e3)
                run_part_module(unet, feeds, dtype)
            synchronize()  # noqa: F821 (from REPORT)
        walls = []
        for _ in range(3):
            synchronize()  # noqa: F821 (from REPORT)
            time.sleep(gap_ms / 1e3)
            start = time.perf_counter()
            run_part_module(unet, feeds, dtype)
            synchronize()  # noqa: F821 (from REPORT)
            walls.append(1e3 * (time.perf_counter() - start))
        return {"kernels": kernel_table(profile), "walls": walls, "environment": environment()}  # noqa: F821

    sides, failed = {}, {}

    def measure(side: str, run) -> None:
        """One side into `sides`, or its error into `failed`: the others still run and print."""
        try:
            sides[side] = run()
        except Exception as error:
            failed[side] = f"{type(error).__name__}: {error}"
            print(f"{side} failed: {failed[side]}", flush=True)
        (out / "kernels.json").write_text(json.dumps({**sides, "failed": failed}, indent=1))

    def stub() -> dict:
        for name in ("/tmp/stub-kernels.json", "/tmp/stub-walls.json"):
            Path(name).unlink(missing_ok=True)  # a side reads only what its own stub wrote
        with (
            EmbeddedTritonServer(repository, log_file=out / "stub.log") as server,
            I2VClient(server.endpoints.grpc_url) as client,
        ):
            client.generate(request)
            client.generate(request)
            # the same process's forward while the server's processes hold the GPU too
            measure("plain-while-serving", plain)
        report = json.loads(Path("/tmp/stub-kernels.json").read_text())
        return {**report, "walls": json.loads(Path("/tmp/stub-walls.json").read_text())}

    measure("stub", stub)
    measure("plain", plain)
    measure("plain-3ms-gaps", lambda: plain(gap_ms=3.0))  # as the in-process loop synchronised per call has them
    measure("plain-6ms-gaps", lambda: plain(gap_ms=6.0))  # as the served steps come: about 6 ms between UNet calls
    if "plain" not in sides:
        raise SystemExit(f"no plain side to compare with: {failed}")

    reference = sides["plain"]["kernels"]
    print(
        "device ms over 3 calls: "
        + ", ".join(f"{k} {sum(v[0] for v in d['kernels'].values()) / 1e3:.1f}" for k, d in sides.items())
    )
    print("wall ms per call, synchronised: " + ", ".join(f"{k} {sorted(d['walls'])[1]:.2f}" for k, d in sides.items()))
    print(" | ".join(f"{k} ms (calls)" for k in sides) + " | kernel")
    keys = set().union(*(d["kernels"] for d in sides.values()))
    for key in sorted(keys, key=lambda k: -reference.get(k, [0])[0])[:40]:
        cells = [d["kernels"].get(key, [0, 0]) for d in sides.values()]
        print(" | ".join(f"{us / 1e3:8.2f} ({n})" for us, n in cells) + f" | {key[:110]}")
    for side, data in sides.items():
        print(side, json.dumps(data["environment"], indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
