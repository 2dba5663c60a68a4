"""Shared fixtures: the tiny model built and exported once per session, a real Triton server on loopback."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from i2v.export.sources import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "i2vgen-xl-tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_dir):
    """The tiny model read back with `from_pretrained`, the production loading path."""
    from i2v.export.sources import load_pipeline

    return load_pipeline(str(tiny_dir))


@pytest.fixture(autouse=True)
def _tiny_pipeline_left_as_built(request):
    """The session's tiny pipeline is shared by every test: one that moves its modules (to a GPU, to fp16) would
    change what every later test runs, and only on the hosts where it moves them. Such a test fails here."""
    yield
    if "tiny_pipeline" not in request.fixturenames:
        return
    import torch

    pipe = request.getfixturevalue("tiny_pipeline")
    moved = {
        name: f"{parameter.device} {parameter.dtype}"
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module)
        for parameter in list(component.parameters())[:1]
        if parameter.device.type != "cpu" or parameter.dtype != torch.float32
    }
    assert not moved, f"the test moved the session's tiny pipeline ({moved}): give it a copy.deepcopy"


@pytest.fixture(scope="session")
def onnx_paths(tiny_pipeline, tmp_path_factory) -> dict[str, Path]:
    from i2v.export.onnx_export import export_all

    return export_all(tiny_pipeline, tmp_path_factory.mktemp("onnx"), progress=False)


@pytest.fixture(scope="session")
def model_repository(tiny_pipeline, onnx_paths, tmp_path_factory) -> Path:
    from i2v.export.repository import write_model_repository

    return write_model_repository(tiny_pipeline, onnx_paths, tmp_path_factory.mktemp("repository"), source="tiny")


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    from i2v.serving.triton_server import EmbeddedTritonServer

    log = tmp_path_factory.mktemp("triton") / "server.log"
    with EmbeddedTritonServer(model_repository, log_file=log) as server:
        yield server


@pytest.fixture(scope="session")
def serve_tiny(tiny_pipeline, tmp_path_factory):
    """`serve_tiny(name, server_options={}, **export_options)`: the tiny model exported into a new repository
    (`write_model_repository` options, source "tiny" unless given) and served on loopback, as a context manager."""
    from i2v.export.repository import write_model_repository
    from i2v.serving.triton_server import EmbeddedTritonServer

    @contextlib.contextmanager
    def serve(name: str, server_options: dict | None = None, **export_options):
        export_options.setdefault("source", "tiny")
        repository = write_model_repository(tiny_pipeline, None, tmp_path_factory.mktemp(name), **export_options)
        log = tmp_path_factory.mktemp(f"{name}-triton") / "server.log"
        with EmbeddedTritonServer(repository, log_file=log, **(server_options or {})) as server:
            yield server

    return serve


@pytest.fixture(scope="session")
def torch_triton(serve_tiny, tiny_dir):
    """The torch runtime exported from a local folder, as a user with downloaded weights does, served."""
    with serve_tiny("torch-repository", source=str(tiny_dir), runtime="torch") as server:
        yield server


@pytest.fixture
def client(triton):
    from i2v.client.grpc_client import I2VClient

    with I2VClient(triton.endpoints.grpc_url) as client:
        yield client


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """A non-square RGB picture with structure (so crops and resizes matter)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:120, 0:180]
    base = np.stack([x / 180 * 255, y / 120 * 255, (x + y) % 64 * 4], axis=-1)
    noise = rng.integers(0, 40, size=base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def photo_png(photo) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    return buffer.getvalue()
