"""Drop-in `unet/1/model.py` for an exported ONNX Runtime repository: the part runner with its `execute()` and
the `session.run` in it timed inside the stub, written to $RUNS (default /tmp/unet-runs.json) as
{"execute": [ms, ...], "session.run": [ms, ...]}."""

import json
import os
import sys
import time

sys.path[:] = [path for path in sys.path if path not in ("", ".")]

import i2v.serving.onnxruntime_session as sessions  # noqa: E402

RUNS = os.environ.get("RUNS", "/tmp/unet-runs.json")
runs: dict[str, list[float]] = {"execute": [], "session.run": []}
open_session = sessions.open_session


class TimedSession:
    def __init__(self, session):
        self.session = session

    def run(self, names, feeds):
        start = time.perf_counter()
        outputs = self.session.run(names, feeds)
        runs["session.run"].append((time.perf_counter() - start) * 1e3)
        return outputs

    def __getattr__(self, name):
        return getattr(self.session, name)


sessions.open_session = lambda *args, **kwargs: TimedSession(open_session(*args, **kwargs))

from i2v.serving import part_runner  # noqa: E402


class TritonPythonModel(part_runner.TritonPythonModel):
    def execute(self, requests):
        start = time.perf_counter()
        try:
            return super().execute(requests)
        finally:
            runs["execute"].append((time.perf_counter() - start) * 1e3)
            with open(RUNS, "w") as out:
                json.dump(runs, out)
