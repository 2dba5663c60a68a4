"""Where a served UNet call's extra time goes: the part's execute() split into input fetch (DLPack from the BLS),
forward and output hand-off, against Triton's compute_infer per call (the stub round trip) and the same module
in this process. argv: model (tiny / full-size-random), height width frames steps, output folder."""

import json
import re
import sys
import time
import urllib.request
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

SHIM = """
import time
import torch
import triton_python_backend_utils as pb_utils
from i2v.model.modules import run_part_module
from i2v.serving.part_runner import TritonPythonModel as Base
from i2v.serving.tensors import to_torch, to_triton

def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()

class TritonPythonModel(Base):
    def execute(self, requests):
        t0 = time.perf_counter()
        inputs = [pb_utils.get_input_tensor_by_name(requests[0], n) for n in self.input_names]
        where = "".join("c" if t.is_cpu() else "g" for t in inputs)
        feeds = [to_torch(t, self.part.device) for t in inputs]
        sync(); t1 = time.perf_counter()
        results = run_part_module(self.part.module, feeds, self.part.dtype)
        sync(); t2 = time.perf_counter()
        out = to_triton(dict(zip(self.part.output_names, results)))
        t3 = time.perf_counter()
        response = [pb_utils.InferenceResponse(output_tensors=out)]
        with open("/tmp/unet-times.txt", "a") as f:
            whole = time.perf_counter() - t0
            f.write(f"{where} {1e3*(t1-t0):.2f} {1e3*(t2-t1):.2f} {1e3*(t3-t2):.2f} {1e3*whole:.2f}\\n")
        return response
"""


def metrics(url):
    text = urllib.request.urlopen(url).read().decode()
    return {
        (m[2], m[1]): float(m[3])
        for m in re.finditer(r'^(nv_inference_[a-z_]+)\{model="([a-z_0-9]+)",version="1"\} ([0-9.e+]+)$', text, re.M)
    }


model, h, w, f, steps, out = sys.argv[1], *map(int, sys.argv[2:6]), Path(sys.argv[6])
device = "gpu" if torch.cuda.is_available() else "cpu"
repo = out / "repository"
t = time.perf_counter()
if not (repo / "unet").exists():
    export_model_repository(model, repo, check=False, runtime="torch", device=device)
print(f"exported in {time.perf_counter() - t:.0f} s", flush=True)
(repo / "unet" / "1" / "model.py").write_text(SHIM)
Path("/tmp/unet-times.txt").unlink(missing_ok=True)
with lighthouse_image() as path:
    image = Path(path).read_bytes()
request = GenerationRequest(
    image=image, prompt="a lighthouse", height=h, width=w, num_frames=f, num_inference_steps=steps, seed=1
)
with EmbeddedTritonServer(repo, log_file=out / "server.log") as server, I2VClient(server.endpoints.grpc_url) as client:
    client.generate(request)
    Path("/tmp/unet-times.txt").write_text("")
    before = metrics(server.endpoints.metrics_url)
    t = time.perf_counter()
    result = client.generate(request)
    total = time.perf_counter() - t
    after = metrics(server.endpoints.metrics_url)
print(f"served request {total:.3f} s; BLS timings {json.dumps(result.timings)}")
for model_name in sorted({k[0] for k in after}):
    d = {k[1]: after[k] - before.get(k, 0) for k in after if k[0] == model_name}
    n = d.get("nv_inference_exec_count", 0) or 1
    cols = ["request", "queue", "compute_input", "compute_infer", "compute_output"]
    per_call = (f"{c} {d.get(f'nv_inference_{c}_duration_us', 0) / n / 1000:.2f} ms" for c in cols)
    print(model_name, f"calls {n:.0f}", " ".join(per_call))
rows = [line.split() for line in Path("/tmp/unet-times.txt").read_text().splitlines()]
print("unet execute per call (ms): inputs where | fetch | forward | hand-off | whole")
for r in rows[:3]:
    print("  ", " | ".join(r))


def med(i):
    return sorted(float(r[i]) for r in rows)[len(rows) // 2]


print(f"median: fetch {med(1):.2f} forward {med(2):.2f} hand-off {med(3):.2f} whole {med(4):.2f} ms")

# the same module, this process, inputs already on the device, synchronised per call
dev = torch.device("cuda" if device == "gpu" else "cpu")
dtype = torch.float16 if dev.type == "cuda" else torch.float32
unet = load_part_module("unet", repo / "unet" / "1" / "weights", dev, dtype)
pipe = load_pipeline(model)
feeds = [torch.from_numpy(a).to(dev) for a in part_inputs(pipe, "unet", batch=2, height=h, width=w, frames=f).values()]
times = []
for _ in range(steps + 2):
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    run_part_module(unet, feeds, dtype)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    times.append(1e3 * (time.perf_counter() - t))
times = sorted(times[2:])
print(f"in-process forward, synchronised: median {times[len(times) // 2]:.2f} ms (min {times[0]:.2f})")
