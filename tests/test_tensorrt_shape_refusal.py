"""A repository built for fixed shapes (TensorRT profiles) refuses other shapes with the supported list.

The refusal is the BLS's, from `model_info.json`, before any part runs, so it is tested here on the embedded
server with the ONNX Runtime parts: the repository declares the shapes a TensorRT build would have had.
"""

from __future__ import annotations

import pytest
from triton_metrics import part_calls

from i2v.client.errors import InvalidInputError
from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest
from i2v.model.info import ModelInfo, SupportedShapes

SHAPES = SupportedShapes(resolutions=((64, 96), (64, 64)), num_frames=(8, 16), max_decode_chunk_size=2)
PROMPT = "a lighthouse"


@pytest.fixture(scope="module")
def shaped_triton(tiny_pipeline, onnx_paths, tmp_path_factory):
    from i2v.export.repository import write_model_repository
    from i2v.serving.triton_server import EmbeddedTritonServer

    repository = write_model_repository(
        tiny_pipeline,
        onnx_paths,
        tmp_path_factory.mktemp("shaped-repository"),
        source="tiny",
        supported_shapes=SHAPES,
    )
    log = tmp_path_factory.mktemp("shaped-triton") / "server.log"
    with EmbeddedTritonServer(repository, log_file=log) as server:
        yield server


def request(photo_png, **params) -> GenerationRequest:
    values = {"height": 64, "width": 64, "num_frames": 8, "num_inference_steps": 10, "seed": 1, **params}
    return GenerationRequest(image=photo_png, prompt=PROMPT, **values)


def test_repository_declares_its_supported_shapes(shaped_triton):
    info = ModelInfo.load(shaped_triton.model_repository / "i2vgen_xl" / "1" / "pipeline")
    assert info.supported_shapes == SHAPES


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"height": 96, "width": 96},
            "height x width 96x96 is not supported by this model's TensorRT engines; "
            "supported: 64x96, 64x64 (frames 8-16)",
        ),
        ({"num_frames": 24}, "num_frames 24 is not supported by this model's TensorRT engines; supported: 8-16"),
        (
            {"decode_chunk_size": 4},
            "decode_chunk_size 4 is not supported by this model's TensorRT engines; supported: 1-2",
        ),
    ],
    ids=["resolution", "frames", "decode-chunk"],
)
def test_unsupported_shape_is_refused_before_any_part_runs(shaped_triton, photo_png, params, message):
    before = part_calls(shaped_triton)
    with I2VClient(shaped_triton.endpoints.grpc_url) as client, pytest.raises(InvalidInputError) as error:
        client.generate(request(photo_png, **params))
    assert message in str(error.value)
    assert part_calls(shaped_triton) == before  # refused up front: no encoder, UNet or decoder call


def test_supported_shapes_are_served(shaped_triton, photo_png):
    with I2VClient(shaped_triton.endpoints.grpc_url) as client:
        result = client.generate(request(photo_png, num_frames=16, decode_chunk_size=2, return_frames=True))
        assert result.frames.shape == (16, 64, 64, 3)
        default = client.generate(
            GenerationRequest(image=photo_png, prompt=PROMPT, num_inference_steps=10, num_frames=8)
        )
        assert (default.metadata["height"], default.metadata["width"]) == (64, 96)  # the model's default size
    assert part_calls(shaped_triton) > 0
