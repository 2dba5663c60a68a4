"""Count the elements of `x` unlike `value`: a tensor read before its writer finished has stale ones."""

import triton_python_backend_utils as pb_utils

from i2v.serving.tensors import instance_device, to_torch, to_triton


class TritonPythonModel:
    def initialize(self, args):
        self.device = instance_device(args)

    def execute(self, requests):
        responses = []
        for request in requests:
            x = to_torch(pb_utils.get_input_tensor_by_name(request, "x"), self.device)
            value = float(pb_utils.get_input_tensor_by_name(request, "value").as_numpy()[0])
            mismatches = (x != value).sum().reshape(1)
            responses.append(pb_utils.InferenceResponse(to_triton({"mismatches": mismatches})))
        return responses
