"""Requests too big for the server's memory are refused before any part runs, naming what fits; an allocation
that fails anyway is its own error kind, and the server serves the next request. The real server, the tiny
model on ONNX Runtime, budgets set small (or out of the way) through I2V_MEMORY_BUDGET_BYTES."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from triton_metrics import part_calls

from i2v.client import GenerationRequest, I2VClient, InvalidInputError, OutOfMemoryError
from i2v.serving.triton_server import EmbeddedTritonServer


def small(photo_png, **params) -> GenerationRequest:
    values = {"height": 64, "width": 64, "num_frames": 8, "num_inference_steps": 10, "seed": 1, **params}
    return GenerationRequest(image=photo_png, prompt="waves", **values)


@pytest.fixture(scope="module")
def budget_server(model_repository, tmp_path_factory):
    """A server told it has 300 MB: the tiny model's 256x256x16 needs about 460 MB by the estimate."""
    log = tmp_path_factory.mktemp("budget") / "server.log"
    with EmbeddedTritonServer(model_repository, env={"I2V_MEMORY_BUDGET_BYTES": "300e6"}, log_file=log) as server:
        yield server


def test_a_request_too_large_for_the_memory_is_refused_before_any_part_runs(budget_server, photo_png):
    with I2VClient(budget_server.endpoints.grpc_url) as client:
        before = part_calls(budget_server)
        with pytest.raises(InvalidInputError) as refused:
            client.generate(small(photo_png, height=256, width=256, num_frames=16))
        assert part_calls(budget_server) == before
        message = str(refused.value)
        assert "256x256 with 16 frames is too large for this server" in message
        assert "0.3 GB of memory is free" in message and "the largest that fits: " in message
        fitting = re.search(r"the largest that fits: (\d+)x(\d+) at 16 frames", message)
        height, width = map(int, fitting.groups())
        assert client.generate(small(photo_png, height=height, width=width, num_frames=16)).video  # as promised
        assert client.generate(small(photo_png)).video


def test_the_cli_reports_a_refusal_as_invalid_input(budget_server, photo_png, tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    run = subprocess.run(
        [sys.executable, "-m", "i2v.cli", "generate", "--url", budget_server.endpoints.grpc_url, "--image", str(image)]
        + ["--prompt", "waves", "--height", "256", "--width", "256", "-o", str(tmp_path / "x.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "too large for this server" in run.stderr


@pytest.fixture(scope="module")
def unchecked_server(model_repository, tmp_path_factory):
    """A server whose stated budget lets everything through: the allocator itself refuses what cannot fit."""
    log = tmp_path_factory.mktemp("unchecked") / "server.log"
    with EmbeddedTritonServer(model_repository, env={"I2V_MEMORY_BUDGET_BYTES": "1e15"}, log_file=log) as server:
        yield server


def test_an_allocation_failure_is_out_of_memory_and_the_next_request_is_served(unchecked_server, photo_png, tmp_path):
    """1280x1280x16 on the tiny model: ONNX Runtime's attention scores alone are 84 GB, more than this machine
    has, so its allocation fails for real; the part gives its memory back and serves the next request."""
    with I2VClient(unchecked_server.endpoints.grpc_url) as client:
        with pytest.raises(OutOfMemoryError, match="out of memory: the unet part could not allocate") as failed:
            client.generate(small(photo_png, height=1280, width=1280, num_frames=16))
        assert "fewer frames" in str(failed.value) and "Failed to allocate" not in str(failed.value)
        assert client.generate(small(photo_png)).video
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    run = subprocess.run(
        [sys.executable, "-m", "i2v.cli", "generate", "--url", unchecked_server.endpoints.grpc_url, "--image"]
        + [str(image), "--prompt", "waves", "--height", "1280", "--width", "1280", "-o", str(tmp_path / "x.mp4")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 6 and "out of memory" in run.stderr
