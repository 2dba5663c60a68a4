"""Reading a real server's Prometheus metrics in tests."""

from __future__ import annotations

import re
import urllib.request


def part_calls(server) -> int:
    """Successful inferences of every part model (the BLS's children), from Triton's metrics."""
    with urllib.request.urlopen(server.endpoints.metrics_url, timeout=10) as response:
        text = response.read().decode()
    pattern = r'^nv_inference_request_success\{model="(?!i2vgen_xl)[^"]+",version="1"\} (\d+)'
    return sum(int(n) for n in re.findall(pattern, text, flags=re.MULTILINE))
