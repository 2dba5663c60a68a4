"""What one denoising step's Python-backend calls cost on the embedded Triton, apart from the UNet's own work:
`python benchmarks/results/cpu-ipc-2026-11-26/probe.py` (the repository beside it: `ipc`, a decoupled model that
times N calls of each, and `echo`, the BLS call's target). Prints two runs' milliseconds per call."""

import json
import queue
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from i2v.serving.triton_server import EmbeddedTritonServer

REPOSITORY = Path(__file__).resolve().parent / "repository"

with EmbeddedTritonServer(Path(sys.argv[1]) if len(sys.argv) > 1 else REPOSITORY) as server:
    for _ in range(2):
        client, answers = grpcclient.InferenceServerClient(server.endpoints.grpc_url), queue.Queue()
        client.start_stream(callback=lambda result, error, answers=answers: answers.put((result, error)))
        tensor = grpcclient.InferInput("X", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, np.float32))
        client.async_stream_infer("ipc", [tensor])
        while True:
            result, error = answers.get()
            if error is not None:
                raise SystemExit(str(error))
            timings = result.as_numpy("T")
            if timings is not None:
                print(json.loads(timings[0]))
                break
        client.stop_stream()
        client.close()
