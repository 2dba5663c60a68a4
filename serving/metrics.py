"""The BLS's own Prometheus metrics, served by Triton on its metrics port beside the nv_* families.

Counters rather than histograms: rates and ratios (steps/s, seconds per stage per request) come from PromQL,
and Triton's own request-duration metrics already give latency.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from i2v.model.parts import PART_NAMES
from i2v.params import MP4_ENCODE_STAGE, UNET_TOTAL_STAGE
from i2v.serving.drain import IN_FLIGHT_METRIC

# The `stage` label's values: each part (the UNet's: its calls of the whole loop), then the MP4 encode
STAGES = (*PART_NAMES, MP4_ENCODE_STAGE)
# unavailable: a part's process died during the request (the supervisor restarts it; the client may retry)
# out_of_memory: an allocation failed although the request passed the memory estimate
# forbidden: the gateway's tenant may not use this model (`i2v.serving.tenancy`)
OUTCOMES = ("ok", "invalid_input", "forbidden", "cancelled", "unavailable", "out_of_memory", "internal")


class BlsMetrics:
    def __init__(self, model: str):
        labels = {"model": model}

        self.families = []  # a MetricFamily must outlive its Metrics: keep them all here

        def family(name: str, description: str, kind):
            self.families.append(pb_utils.MetricFamily(name=name, description=description, kind=kind))
            return self.families[-1]

        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        self.in_flight = family(IN_FLIGHT_METRIC, "Requests being generated now", gauge).Metric(labels)
        self.steps = family("i2v_denoise_steps_total", "Denoising steps completed", counter).Metric(labels)
        stage_seconds = family("i2v_stage_seconds", "Seconds spent per pipeline stage", counter)
        self.stage_seconds = {s: stage_seconds.Metric({**labels, "stage": s}) for s in STAGES}
        requests = family("i2v_requests_total", "Finished requests by outcome", counter)
        self.requests = {o: requests.Metric({**labels, "outcome": o}) for o in OUTCOMES}
        errors = family("i2v_request_errors_total", "Failed requests by kind", counter)
        self.errors = {o: errors.Metric({**labels, "kind": o}) for o in OUTCOMES if o != "ok"}

    def record_stages(self, timings: dict[str, float]) -> None:
        for stage, metric in self.stage_seconds.items():
            seconds = timings.get(UNET_TOTAL_STAGE if stage == "unet" else stage)
            if seconds is not None:
                metric.increment(seconds)

    def finish(self, outcome: str) -> None:
        self.requests[outcome].increment(1)
        if outcome != "ok":
            self.errors[outcome].increment(1)
