"""Generic Triton Python model serving one ONNX graph with ONNX Runtime: every part model on the embedded server.

The model is parameterised by its own `config.pbtxt` alone: inputs and outputs are taken by the names it
declares, the graph is `<version>/model.onnx`. In NVIDIA's container the same parts are native `onnxruntime`
or `tensorrt_plan` models instead; the BLS calls them by name and cannot tell the difference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = ort.SessionOptions()
        threads = int(os.environ.get("I2V_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = {}
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"{self.model_name}: missing input '{name}'")
                    feeds[name] = np.ascontiguousarray(tensor.as_numpy())
                results = self.session.run(self.output_names, feeds)
                outputs = [pb_utils.Tensor(n, r) for n, r in zip(self.output_names, results, strict=True)]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except Exception as exc:  # one bad request must not take the model down
                error = pb_utils.TritonError(f"{self.model_name}: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def finalize(self) -> None:
        self.session = None
