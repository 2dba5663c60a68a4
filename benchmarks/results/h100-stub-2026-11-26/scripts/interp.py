"""Is the Python-backend stub's interpreter slower than python3? The stub embeds the shared libpython; Ubuntu's
/usr/bin/python3.12 links it statically. Run under each (interp.sh): a pure-Python loop, and the full-size UNet's
eager fp16 forward at 512x512x16 (batch 2), synchronised per call and back to back. argv: device, full|tiny."""

import json
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import torch
from diffusers.models.unets.unet_i2vgen_xl import I2VGenXLUNet


class Node:
    def __init__(self):
        self.w, self.children = 1.0, []

    def __call__(self, x):
        for child in self.children:
            x = child(x)
        return x * self.w + 1


def python_loop_ms() -> float:
    root = Node()
    root.children = [Node() for _ in range(50)]
    for child in root.children:
        child.children = [Node() for _ in range(20)]
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(100):
            root(1.0)
        best = min(best, time.perf_counter() - start)
    return best * 1000


device, size = torch.device(sys.argv[1]), sys.argv[2]
full = dict(
    attention_head_dim=64,
    block_out_channels=[320, 640, 1280, 1280],
    cross_attention_dim=1024,
    down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
    in_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    num_attention_heads=None,
    out_channels=4,
    sample_size=32,
    up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
)
tiny = dict(
    full,
    block_out_channels=[32, 32, 64, 64],
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=8,
    layers_per_block=1,
)
cfg, (h, w, f), text = (full, (64, 64, 16), 1024) if size == "full" else (tiny, (8, 8, 4), 32)
dtype = torch.float16 if device.type == "cuda" else torch.float32
torch.manual_seed(0)
with torch.device(device):
    unet = I2VGenXLUNet(**cfg).to(dtype).eval()
    inputs = dict(
        sample=torch.randn(2, 4, f, h, w, dtype=dtype),
        timestep=torch.tensor([500.0]),
        fps=torch.full((2,), 16.0),
        image_latents=torch.randn(2, 4, f, h, w, dtype=dtype),
        image_embeddings=torch.randn(2, 1, text, dtype=dtype),
        encoder_hidden_states=torch.randn(2, 77, text, dtype=dtype),
    )
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def forward():
    with torch.inference_mode():
        return unet(
            inputs["sample"],
            inputs["timestep"],
            return_dict=False,
            **{k: v for k, v in inputs.items() if k not in ("sample", "timestep")},
        )[0]


for _ in range(3):
    forward()
sync()
synced = []
for _ in range(8):
    start = time.perf_counter()
    forward()
    sync()
    synced.append((time.perf_counter() - start) * 1000)
start = time.perf_counter()
for _ in range(8):
    forward()
sync()
free_running = (time.perf_counter() - start) * 1000 / 8
print(
    json.dumps(
        {
            "interpreter": sys.executable,
            "shared": sysconfig.get_config_var("Py_ENABLE_SHARED"),
            "libpython": next(
                (line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libpython" in line),
                "static",
            ),
            "python_loop_ms": round(python_loop_ms(), 2),
            "forward_synced_ms": round(statistics.median(synced), 2),
            "forward_free_running_ms": round(free_running, 2),
            "device": str(device),
            "size": size,
        }
    )
)
