"""Requests too big for the server's memory are refused before any part runs, naming what fits; an allocation
that fails anyway is its own error kind, and the server serves the next request. The real server, the tiny
model on ONNX Runtime, budgets set small (or out of the way) through I2V_MEMORY_BUDGET_BYTES, or a real memory
cgroup's limit, as a container's."""

from __future__ import annotations

import contextlib
import os
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


class MemoryCgroup:
    """A child of this process's memory cgroup (v1 or v2) that processes can be started in, its limit set at
    will: what a container's or a pod's memory limit is to the server."""

    def __init__(self) -> None:
        from i2v.serving.host_memory import CGROUP_V1, memory_cgroups

        found = memory_cgroups()
        if not found:
            pytest.skip("no memory cgroup hierarchy in /proc/self/cgroup here")
        self.parent, hierarchy = found[0]
        _, self.limit_file, self.usage_file = hierarchy
        v1 = hierarchy == CGROUP_V1
        self.folder = self.parent / f"i2v-test-{os.getpid()}"
        try:
            self.folder.mkdir()
            if not v1:  # cgroup v2: the memory controller must be delegated to the child
                (self.parent / "cgroup.subtree_control").write_text("+memory")
            self.set_limit(None)
        except OSError as exc:
            self.remove()
            pytest.skip(f"cannot make a memory cgroup under {self.parent} here ({exc}): needs root and cgroups")

    def set_limit(self, limit: int | None) -> None:
        """`limit` bytes, or none (v2 writes it "max", v1 -1)."""
        unlimited = "max" if self.limit_file == "memory.max" else "-1"
        (self.folder / self.limit_file).write_text(unlimited if limit is None else str(int(limit)))

    def usage(self) -> int:
        return int((self.folder / self.usage_file).read_text())

    def inactive_file(self) -> int:
        """Page cache the kernel gives back first: the admission does not count it as used."""
        from i2v.serving.host_memory import inactive_file_bytes

        return inactive_file_bytes(self.folder)

    @contextlib.contextmanager
    def started_inside(self):
        """What this process starts meanwhile runs in the cgroup (and stays there); this process comes back."""
        (self.folder / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (self.parent / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def test_the_memory_the_parts_keep_from_a_request_counts_for_the_next_one(model_repository, photo_png, tmp_path):
    """A server in a memory cgroup with a limit (no budget stated). After one 512x512x8 video its parts keep
    what they allocated (ONNX Runtime's arena); with the limit then set just above what the cgroup uses, the same
    request is served again from that memory, while a larger one (12 frames) is refused, naming a free memory
    made of the little the limit leaves plus what the parts hold: the cgroup's, not the machine's."""
    from i2v.model.info import ModelInfo
    from i2v.params import GenerationParams
    from i2v.serving.admission import GB, request_bytes
    from i2v.serving.host_memory import cpu_available_bytes

    cgroup = MemoryCgroup()
    info = ModelInfo.load(model_repository / "i2vgen_xl" / "1" / "pipeline")
    same, larger = (dict(height=512, width=512, num_frames=frames) for frames in (8, 12))
    estimate = request_bytes(info, GenerationParams(prompt="waves", **same), gpu=False)
    try:
        with cgroup.started_inside():
            cgroup.set_limit(cgroup.usage() + 2 * GB)  # what the admission reads there, in this process
            expected = 2 * GB + cgroup.inactive_file()
            assert abs(cpu_available_bytes() - expected) < 0.2 * GB, (cpu_available_bytes(), expected)
            cgroup.set_limit(None)
            server = EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log")
            server.start()
        try:
            with I2VClient(server.endpoints.grpc_url) as client:
                assert client.generate(small(photo_png, **same)).video
                room = GB  # what the limit leaves: less than the estimate, enough for the parts to grow a little
                cgroup.set_limit(cgroup.usage() + room)
                with pytest.raises(InvalidInputError, match="512x512 with 12 frames is too large") as refused:
                    client.generate(small(photo_png, **larger))
                free = float(re.search(r"and ([0-9.]+) GB of memory is free", str(refused.value)).group(1))
                expected = room + cgroup.inactive_file() + estimate
                assert abs(free * GB - expected) < 0.3 * GB, (free, room, cgroup.inactive_file(), estimate)
                assert client.generate(small(photo_png, **same)).video
        finally:
            server.stop()
    finally:
        cgroup.remove()


def test_a_compiled_unet_counts_the_memory_of_its_warm_up_request_from_the_start(tiny_pipeline, tmp_path):
    """Triton sends a compiled UNet the model's default request while it loads (its config's model_warmup); on a
    GPU that request's memory stays with the part, in PyTorch's cache or in the CUDA graphs' pool. The BLS
    counts it from the start: otherwise, on a GPU left with less free memory than the default request needs,
    the default request itself was refused although the part already held what it takes."""
    import torch
    from model_configs import read_config

    from i2v.export.repository import write_model_repository
    from i2v.model.info import ModelInfo
    from i2v.params import GenerationParams
    from i2v.serving.admission import FEATURE_MAPS, HEADROOM, HeldMemory

    def held(mode: str, device: str = "cuda") -> HeldMemory:
        repository = write_model_repository(
            tiny_pipeline, None, tmp_path / mode, source="tiny", runtime="torch", instance_kind="KIND_GPU",
            torch_compile=mode,
        )  # fmt: skip
        return HeldMemory(ModelInfo.load(repository / "i2vgen_xl" / "1" / "pipeline"), torch.device(device))

    graphs = held("cuda-graphs")
    sample = read_config(tmp_path / "cuda-graphs" / "unet" / "config.pbtxt").model_warmup[0].inputs["sample"]
    batch, _, frames, height, width = sample.dims  # what Triton sends the UNet while it loads
    warm_up = int(HEADROOM * FEATURE_MAPS * batch * frames * height * width * graphs.info.unet_channels * 2)  # fp16
    default = GenerationParams(prompt="waves", **graphs.info.defaults)
    other = default.replace(num_frames=default.num_frames // 2)
    assert graphs.for_request(default) == warm_up > 0  # replayed from the graph captured at load
    assert graphs.for_request(other) == 0  # another shape is captured anew: eagerly first, outside the pool
    assert graphs.for_request(default, lora=True) == 0  # a LoRA runs the module itself
    graphs.ran(warm_up // 3)
    graphs.failed()
    assert graphs.for_request(default) == warm_up  # the graphs keep their pool after an allocation failure

    inductor = held("default")
    assert inductor.for_request(other) == inductor.for_request(default, lora=True) == warm_up  # PyTorch's cache
    inductor.ran(2 * warm_up)
    assert inductor.for_request(other) == 2 * warm_up
    inductor.failed()
    assert inductor.for_request(default) == 0  # the part that failed emptied its cache

    assert held("none").for_request(default) == 0  # nothing ran before the first request
    assert held("cuda-graphs", "cpu").for_request(default) == 0  # PyTorch on a CPU gives large blocks back
