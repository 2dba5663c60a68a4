"""One ONNX Runtime session as the served parts and the in-process benchmark both open it.

Triton runs the BLS and five part models as six processes on the same cores. ONNX Runtime's thread pool spins
by default after each run, waiting for more work: in the served path that busy-waiting takes the cores from the
process that has the next piece of work (the BLS between two UNet steps, the UNet after it), and the served
steps measured 1.12-1.17x the in-process ones on two cores; without spinning, 1.05x at 128x128x16
(benchmarks/README.md). The benchmark's in-process runner opens its sessions the same way, so the two differ
only by Triton.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort


def open_session(path: Path, initializers: dict[str, ort.OrtValue] | None = None) -> ort.InferenceSession:
    """A CPU session for one part's graph; `I2V_ORT_THREADS` caps its intra-op threads (0: one per core).
    `initializers` replace the graph's weights of those names (a merged LoRA); the caller keeps them alive."""
    options = ort.SessionOptions()
    for name, value in (initializers or {}).items():
        options.add_initializer(name, value)
    threads = int(os.environ.get("I2V_ORT_THREADS", "0"))
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
