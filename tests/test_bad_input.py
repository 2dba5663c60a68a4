"""Every bad request gets a clear error naming the problem, and the next good request is served."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from i2v.client.errors import InvalidInputError
from i2v.client.grpc_client import MODEL_NAME, build_inputs
from i2v.client.types import GenerationRequest

PROMPT = "a lighthouse"


def send_raw(triton, inputs) -> str:
    """Send tensors as given (no client-side checks) and return the server's error message."""
    errors, finals = [], []
    client = grpcclient.InferenceServerClient(triton.endpoints.grpc_url)
    try:
        client.start_stream(callback=lambda result, error: (errors if error else finals).append(error or result))
        client.async_stream_infer(MODEL_NAME, inputs, enable_empty_final_response=True)
        client.stop_stream()  # waits for the stream to drain
    finally:
        client.close()
    assert errors, "the server accepted a bad request"
    return errors[0].message()


def tensors(**overrides):
    """Valid inputs, with some replaced or (value None) removed; values are (triton type, numpy array)."""
    request = GenerationRequest(image=b"placeholder", prompt=PROMPT, num_inference_steps=10, height=64, width=64,
                                num_frames=8)
    inputs = {t.name(): t for t in build_inputs(request)}
    for name, value in overrides.items():
        inputs.pop(name, None)
        if value is not None:
            triton_type, array = value
            tensor = grpcclient.InferInput(name, list(array.shape), triton_type)
            tensor.set_data_from_numpy(array)
            inputs[name] = tensor
    return list(inputs.values())


def scalar(triton_type, value, dtype):
    return (triton_type, np.array([value], dtype=dtype))


@pytest.fixture
def png(photo_png):
    return ("BYTES", np.array([photo_png], dtype=np.object_))


BAD_REQUESTS = {
    "missing image": (lambda png: tensors(image=None), "image is required"),
    "corrupt image": (lambda png: tensors(image=("BYTES", np.array([b"\x89PNG not really"], dtype=np.object_))),
                      "image could not be decoded"),
    "empty prompt": (lambda png: tensors(image=png, prompt=("BYTES", np.array([b"   "], dtype=np.object_))),
                     "prompt must be a non-empty string"),
    "missing prompt": (lambda png: tensors(image=png, prompt=None), "prompt is required"),
    "too many frames": (lambda png: tensors(image=png, num_frames=scalar("INT32", 40, np.int32)),
                        "num_frames must be between 8 and 32, got 40"),
    "too few steps": (lambda png: tensors(image=png, num_inference_steps=scalar("INT32", 3, np.int32)),
                      "num_inference_steps must be between 10 and 100, got 3"),
    "guidance NaN": (lambda png: tensors(image=png, guidance_scale=scalar("FP32", np.nan, np.float32)),
                     "guidance_scale must be between 1 and 20, got nan"),
    "height not a multiple": (lambda png: tensors(image=png, height=scalar("INT32", 72, np.int32)),
                              "height must be a multiple of 16, got 72"),
    "prompt not UTF-8": (lambda png: tensors(image=png, prompt=("BYTES", np.array([b"\xff\xfe"], dtype=np.object_))),
                         "prompt must be UTF-8 text"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_request_is_refused_with_a_clear_error_and_the_next_is_served(triton, client, png, photo_png, case):
    make_inputs, expected = BAD_REQUESTS[case]
    message = send_raw(triton, make_inputs(png))
    assert expected in message
    assert message.startswith("invalid input") or "invalid input" in message
    good = client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, num_inference_steps=10, num_frames=8,
                                             height=64, width=64))
    assert good.video


def test_wrong_data_type_is_refused_by_the_server(triton):
    message = send_raw(triton, tensors(num_frames=scalar("FP32", 16.0, np.float32)))
    assert "num_frames" in message and "data-type is 'FP32'" in message


def test_client_checks_parameters_before_sending(client, photo_png):
    with pytest.raises(ValueError, match="num_frames must be between 8 and 32, got 64"):
        client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, num_frames=64))
    with pytest.raises(InvalidInputError, match="height must be a multiple of 16, got 72"):
        client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, height=72, num_inference_steps=10))
