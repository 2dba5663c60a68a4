"""Queue slow work on a side stream that ends by writing `value` everywhere, then call `checksum` at once."""

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from i2v.serving.tensors import instance_device, to_torch, to_triton

ELEMENTS = 64 * 2**20  # 256 MB of fp32


class TritonPythonModel:
    def initialize(self, args):
        self.device = instance_device(args)
        self.side = torch.cuda.Stream(self.device)
        self.scratch = torch.randn(4096, 4096, device=self.device)

    def execute(self, requests):
        responses = []
        for request in requests:
            value = float(pb_utils.get_input_tensor_by_name(request, "value").as_numpy()[0])
            with torch.cuda.stream(self.side):
                for _ in range(50):  # about 7 TFLOP of matrix products before the write: the race window
                    self.scratch = torch.tanh(self.scratch @ self.scratch)
                tensor = torch.full((ELEMENTS,), value, device=self.device)
            inputs = [*to_triton({"x": tensor}), pb_utils.Tensor("value", np.array([value], dtype=np.float32))]
            call = pb_utils.InferenceRequest(
                model_name="checksum", requested_output_names=["mismatches"], inputs=inputs
            )
            answer = call.exec()
            if answer.has_error():
                raise RuntimeError(answer.error().message())
            mismatches = to_torch(answer.output_tensors()[0], torch.device("cpu"))
            counted = pb_utils.Tensor("mismatches", mismatches.numpy().astype(np.int64))
            responses.append(pb_utils.InferenceResponse([counted]))
        return responses
