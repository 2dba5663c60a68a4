"""Where the served step's extra time goes on the GPU: Triton's own per-model durations (queue, input copy,
compute, output copy) around one 25-step 512x512x16 request, against the BLS loop's step time."""

import re
import sys
import time
import urllib.request
from pathlib import Path

from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest
from i2v.examples import lighthouse_image
from i2v.serving.triton_server import EmbeddedTritonServer

COUNTERS = ("request", "queue", "compute_input", "compute_infer", "compute_output")
SAMPLE = re.compile(r'^nv_inference_([a-z_]+)\{model="([a-z_0-9]+)",version="1"\} ([0-9.e+]+)$', re.M)


def metrics(url: str) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(url).read().decode()
    return {(m[2], m[1]): float(m[3]) for m in SAMPLE.finditer(text)}


repository = Path(sys.argv[1])
with lighthouse_image() as path:
    image = Path(path).read_bytes()
request = GenerationRequest(
    image=image, prompt="a lighthouse", height=512, width=512, num_frames=16, num_inference_steps=25, seed=1
)
with (
    EmbeddedTritonServer(repository, log_file=Path("/tmp/probe-server.log")) as server,
    I2VClient(server.endpoints.grpc_url) as client,
):
    client.generate(request)  # warm-up
    before = metrics(server.endpoints.metrics_url)
    start = time.perf_counter()
    client.generate(request)
    total = time.perf_counter() - start
    after = metrics(server.endpoints.metrics_url)
print(f"request {total:.3f} s")
for model in sorted({model for model, _ in after}):
    delta = {name: value - before.get((m, name), 0) for (m, name), value in after.items() if m == model}
    calls = delta.get("exec_count", 0) or 1
    times = " ".join(f"{c} {delta.get(c + '_duration_us', 0) / calls / 1000:.2f} ms" for c in COUNTERS)
    print(model, f"calls {calls:.0f}", times)
