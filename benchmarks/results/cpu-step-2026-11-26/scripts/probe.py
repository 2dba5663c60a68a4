"""Served against in-process, per UNet call, on one exported ONNX Runtime repository: Triton's own counters for
the unet model (compute_infer: the stub round trip; success: from arrival to answer) and the BLS's seconds per
step, against the same loop in this process (`session.run` of the UNet timed, and its seconds per step).
argv: repository height width frames repeats [served|inprocess|load ...] (default: served inprocess twice);
$STEPS denoising steps (default 25)."""

import io
import os
import statistics
import sys
import time
from pathlib import Path

import tritonclient.grpc as grpcclient
from inprocess import lighthouse, timed_loop

from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest
from i2v.params import GenerationParams
from i2v.serving.triton_server import EmbeddedTritonServer

repository = Path(sys.argv[1])
height, width, frames, repeats = map(int, sys.argv[2:6])
steps = int(os.environ.get("STEPS", "25"))
shape = {"height": height, "width": width, "num_frames": frames, "num_inference_steps": steps, "seed": 1}
image = lighthouse()
png = io.BytesIO()
image.save(png, format="PNG")


def unet_counters(client) -> tuple[int, int, int]:
    stats = client.get_inference_statistics(model_name="unet", as_json=True)["model_stats"][0]["inference_stats"]
    return int(stats["compute_infer"]["count"]), int(stats["compute_infer"]["ns"]), int(stats["success"]["ns"])


def served() -> None:
    request = GenerationRequest(image=png.getvalue(), prompt="a lighthouse", **shape)
    with EmbeddedTritonServer(repository) as server, I2VClient(server.endpoints.grpc_url) as client:
        counters = grpcclient.InferenceServerClient(server.endpoints.grpc_url)
        client.generate(request)  # warm-up
        before = unet_counters(counters)
        steps = [client.generate(request).metadata["timings"]["unet_per_step"] for _ in range(repeats)]
        after = unet_counters(counters)
    n = after[0] - before[0]
    print(
        f"served:     unet compute_infer {(after[1] - before[1]) / n / 1e6:6.2f} ms, success "
        f"{(after[2] - before[2]) / n / 1e6:6.2f} ms per call; BLS {statistics.median(steps) * 1e3:6.2f} ms per step"
    )


def inprocess() -> None:
    generator, unet_ms = timed_loop(repository)
    params = GenerationParams(prompt="a lighthouse", **shape)
    generator(image, params)  # warm-up
    unet_ms.clear()
    steps = [generator(image, params).timings["unet_per_step"] for _ in range(repeats)]
    print(
        f"in-process: unet session.run  {statistics.mean(unet_ms):6.2f} ms per call;"
        f"{'':26s}loop {statistics.median(steps) * 1e3:6.2f} ms per step"
    )


def load() -> None:
    """Served requests for $LOAD_S seconds (default 40), for cpu.py to watch."""
    request = GenerationRequest(image=png.getvalue(), prompt="a lighthouse", **shape)
    with EmbeddedTritonServer(repository) as server, I2VClient(server.endpoints.grpc_url) as client:
        end = time.monotonic() + float(os.environ.get("LOAD_S", "40"))
        while time.monotonic() < end:
            client.generate(request)


for what in sys.argv[6:] or ["served", "inprocess", "served", "inprocess"]:
    {"served": served, "inprocess": inprocess, "load": load}[what]()
