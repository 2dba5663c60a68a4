"""Times N calls of each per-step Python-backend operation the BLS makes (see ../../README.md)."""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

N = 300


def per_call_ms(call) -> float:
    start = time.perf_counter()
    for i in range(N):
        call(i)
    return (time.perf_counter() - start) / N * 1e3


class TritonPythonModel:
    def initialize(self, args):
        self.family = pb_utils.MetricFamily(name="probe_total", description="probe", kind=pb_utils.MetricFamily.COUNTER)
        self.metric = self.family.Metric({"probe": "ipc"})

    def execute(self, requests):
        latents = np.zeros((2, 4, 16, 16, 16), dtype=np.float32).reshape(-1)  # 128 KB, a 64x64x16 step's latents

        def bls_call(_):
            inputs = [pb_utils.Tensor("X", latents)]
            response = pb_utils.InferenceRequest(model_name="echo", requested_output_names=["Y"], inputs=inputs).exec()
            response.output_tensors()[0].as_numpy()

        for request in requests:
            sender = request.get_response_sender()

            def progress(i, sender=sender):
                step = pb_utils.Tensor("P", np.array([i, N], dtype=np.int32))
                sender.send(pb_utils.InferenceResponse(output_tensors=[step]))

            timings = {
                "metric_increment_ms": per_call_ms(lambda _: self.metric.increment(1)),
                "is_cancelled_ms": per_call_ms(lambda _, request=request: request.is_cancelled()),
                "progress_send_ms": per_call_ms(progress),
                "bls_exec_128KB_ms": per_call_ms(bls_call),
            }
            answer = pb_utils.Tensor("T", np.array([json.dumps(timings).encode()], dtype=np.object_))
            sender.send(
                pb_utils.InferenceResponse(output_tensors=[answer]), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            )
        return None
