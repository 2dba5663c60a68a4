"""Drop-in `i2vgen_xl/1/model.py` for an exported repository: the BLS with timers around what it does per
denoising step besides the UNet (its call split into building, `exec()` and reading back), written to
$TIMES (default /tmp/bls-times.json) after each request as {piece: [total ms, calls]}."""

import collections
import json
import os
import sys
import time

sys.path[:] = [path for path in sys.path if path not in ("", ".")]

import triton_python_backend_utils as pb_utils  # noqa: E402

import i2v.serving.bls as bls  # noqa: E402

TIMES = os.environ.get("TIMES", "/tmp/bls-times.json")
total: dict[str, float] = collections.defaultdict(float)
calls: collections.Counter = collections.Counter()


def add(key: str, seconds: float) -> None:
    total[key] += seconds
    calls[key] += 1


def timed(key, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            add(key, time.perf_counter() - start)

    return wrapper


class _Steps:
    """The BLS's steps counter, timed (a Metric's attributes cannot be replaced)."""

    def __init__(self, metric):
        self.increment = timed("steps counter", metric.increment)


class TritonPythonModel(bls.TritonPythonModel):
    def initialize(self, args):
        super().initialize(args)
        self.metrics.steps = _Steps(self.metrics.steps)
        generator = self.generator
        generator.scheduler_step = timed("scheduler step", generator.scheduler_step)
        call = type(generator).__call__

        def timed_call(image, params, on_step=None, is_cancelled=None):
            total.clear()
            calls.clear()
            start = time.perf_counter()
            try:
                return call(
                    generator,
                    image,
                    params,
                    on_step=timed("on_step (in the loop)", on_step),
                    is_cancelled=timed("is_cancelled", is_cancelled),
                )
            finally:
                add("whole generation", time.perf_counter() - start)
                with open(TIMES, "w") as out:
                    json.dump({k: [total[k] * 1e3, calls[k]] for k in total}, out, indent=1)

        self.generator = type("TimedGenerator", (), {"__call__": staticmethod(timed_call), "info": generator.info})()

    def generate(self, request, sender):
        class TimedSender:
            send = staticmethod(timed("sender.send", sender.send))

        return super().generate(request, TimedSender)

    def run_part(self, name, inputs):
        if name != "unet":
            return super().run_part(name, inputs)
        t0 = time.perf_counter()
        triton_inputs = bls.to_triton(inputs)
        t1 = time.perf_counter()
        request = pb_utils.InferenceRequest(
            model_name=name, requested_output_names=list(bls.OUTPUT_NAMES[name]), inputs=triton_inputs
        )
        t2 = time.perf_counter()
        response = request.exec()
        t3 = time.perf_counter()
        if response.has_error():
            raise bls.PartError(name, response.error().message())
        outputs = {t.name(): bls.to_torch(t, self.device) for t in response.output_tensors()}
        t4 = time.perf_counter()
        for key, seconds in (
            ("unet inputs to Triton", t1 - t0),
            ("unet request built", t2 - t1),
            ("unet exec()", t3 - t2),
            ("unet outputs to torch", t4 - t3),
        ):
            add(key, seconds)
        return outputs
