"""Every bad request gets a clear error naming the problem, and the next good request is served."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

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
    request = GenerationRequest(
        image=b"placeholder", prompt=PROMPT, num_inference_steps=10, height=64, width=64, num_frames=8
    )
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


def image_bytes(format: str) -> bytes:
    """A picture PIL can read, in another format than the API takes."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format=format)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims another size (CRC fixed), as a hostile upload would."""
    data = bytearray(png_bytes(Image.new("RGB", (16, 16))))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def image_input(data: bytes):
    return ("BYTES", np.array([data], dtype=np.object_))


def text_input(data: bytes):
    return ("BYTES", np.array([data], dtype=np.object_))


BAD_REQUESTS = {
    "missing image": (lambda png: tensors(image=None), "image is required"),
    "corrupt image": (
        lambda png: tensors(image=("BYTES", np.array([b"\x89PNG not really"], dtype=np.object_))),
        "image could not be decoded",
    ),
    "empty prompt": (
        lambda png: tensors(image=png, prompt=("BYTES", np.array([b"   "], dtype=np.object_))),
        "prompt must be a non-empty string",
    ),
    "missing prompt": (lambda png: tensors(image=png, prompt=None), "prompt is required"),
    "too many frames": (
        lambda png: tensors(image=png, num_frames=scalar("INT32", 40, np.int32)),
        "num_frames must be between 8 and 32, got 40",
    ),
    "too few steps": (
        lambda png: tensors(image=png, num_inference_steps=scalar("INT32", 3, np.int32)),
        "num_inference_steps must be between 10 and 100, got 3",
    ),
    "guidance NaN": (
        lambda png: tensors(image=png, guidance_scale=scalar("FP32", np.nan, np.float32)),
        "guidance_scale must be between 1 and 20, got nan",
    ),
    "height not a multiple": (
        lambda png: tensors(image=png, height=scalar("INT32", 72, np.int32)),
        "height must be a multiple of 16, got 72",
    ),
    "prompt not UTF-8": (
        lambda png: tensors(image=png, prompt=("BYTES", np.array([b"\xff\xfe"], dtype=np.object_))),
        "prompt must be UTF-8 text",
    ),
    "empty image bytes": (lambda png: tensors(image=image_input(b"")), "image is empty"),
    "text instead of an image": (lambda png: tensors(image=image_input(b"hello, world")), "image could not be decoded"),
    "base64 text without its encoding": (
        lambda png: tensors(image=image_input(base64.b64encode(png[1][0]))),
        'not a PNG, JPEG or WebP file, but base64 text or a data: URI: send "encoding": "base64" with it',
    ),
    "a GIF": (lambda png: tensors(image=image_input(image_bytes("GIF"))), "it is not a PNG, JPEG or WebP file"),
    "a BMP": (lambda png: tensors(image=image_input(image_bytes("BMP"))), "it is not a PNG, JPEG or WebP file"),
    "truncated PNG": (
        lambda png: tensors(image=image_input(png[1][0][: len(png[1][0]) // 2])),
        "image could not be decoded",
    ),
    "1x1 image": (lambda png: tensors(image=image_input(png_bytes(Image.new("RGB", (1, 1))))), "image is too small"),
    "header claims 100000x100000": (
        lambda png: tensors(image=image_input(png_claiming_size(100_000, 100_000))),
        "image is too large",
    ),
    "decompression bomb 7000x7000": (
        lambda png: tensors(image=image_input(png_bytes(Image.new("L", (7000, 7000))))),
        "image is too large: 7000x7000 pixels",
    ),
    "negative num_frames": (
        lambda png: tensors(image=png, num_frames=scalar("INT32", -4, np.int32)),
        "num_frames must be between 8 and 32, got -4",
    ),
    "negative seed": (lambda png: tensors(image=png, seed=scalar("INT64", -1, np.int64)), "seed must be between 0"),
    "guidance infinite": (
        lambda png: tensors(image=png, guidance_scale=scalar("FP32", np.inf, np.float32)),
        "guidance_scale must be between 1 and 20, got inf",
    ),
    "guidance negative": (
        lambda png: tensors(image=png, guidance_scale=scalar("FP32", -3, np.float32)),
        "guidance_scale must be between 1 and 20, got -3.0",
    ),
    "fps zero": (
        lambda png: tensors(image=png, fps=scalar("INT32", 0, np.int32)),
        "fps must be between 4 and 24, got 0",
    ),
    "lora_scale 3": (
        lambda png: tensors(image=png, lora=text_input(b"any"), lora_scale=scalar("FP32", 3, np.float32)),
        "lora_scale must be between 0 and 2, got 3.0",
    ),
    "lora_scale NaN": (
        lambda png: tensors(image=png, lora=text_input(b"any"), lora_scale=scalar("FP32", np.nan, np.float32)),
        "lora_scale must be between 0 and 2, got nan",
    ),
    "lora name of 65 characters": (
        lambda png: tensors(image=png, lora=text_input(b"x" * 65)),
        "lora must be at most 64 characters, got 65",
    ),
    "lora naming a path": (
        lambda png: tensors(image=png, lora=text_input(b"../../etc/passwd")),
        "lora '../../etc/passwd' is not registered",
    ),
    "steps 1000": (
        lambda png: tensors(image=png, num_inference_steps=scalar("INT32", 1000, np.int32)),
        "num_inference_steps must be between 10 and 100, got 1000",
    ),
    "width too large": (
        lambda png: tensors(image=png, width=scalar("INT32", 4096, np.int32)),
        "width must be between 64 and 1280, got 4096",
    ),
    "decode chunk zero": (
        lambda png: tensors(image=png, decode_chunk_size=scalar("INT32", 0, np.int32)),
        "decode_chunk_size must be between 1 and 32, got 0",
    ),
    "oversized prompt": (
        lambda png: tensors(image=png, prompt=text_input(b"x" * 2001)),
        "prompt must be at most 2000 characters, got 2001",
    ),
    "negative prompt not UTF-8": (
        lambda png: tensors(image=png, negative_prompt=text_input(b"\xc3\x28")),
        "negative_prompt must be UTF-8 text",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_request_is_refused_with_a_clear_error_and_the_next_is_served(triton, client, png, photo_png, case):
    make_inputs, expected = BAD_REQUESTS[case]
    message = send_raw(triton, make_inputs(png))
    assert expected in message
    assert message.startswith("invalid input") or "invalid input" in message
    assert not re.search(r" at 0x[0-9a-fA-F]+|<[\w.]+ object|Error\(", message), f"a raw library error: {message}"
    good = client.generate(
        GenerationRequest(image=photo_png, prompt=PROMPT, num_inference_steps=10, num_frames=8, height=64, width=64)
    )
    assert good.video


def test_an_http_field_that_names_no_parameter_is_refused_not_ignored(triton, photo_png):
    """Over HTTP (Triton's generate_stream) a JSON field that is no input becomes a request parameter: a typo
    ("frames") must be refused, naming it and the real fields, not generate with the default; then a good
    request is served."""
    import base64
    import json
    import urllib.error
    import urllib.request

    def stream(**fields) -> tuple[int, list[dict]]:
        body = {"image": base64.b64encode(photo_png).decode(), "encoding": "base64", "prompt": PROMPT, **fields}
        url = f"http://{triton.endpoints.http_url}/v2/models/{MODEL_NAME}/generate_stream"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode()), timeout=300) as reply:
                status, text = reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        return status, [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]

    status, events = stream(frames=8, num_inference_steps=10)
    assert status == 400 and "unknown field 'frames'" in events[-1]["error"] and "num_frames" in events[-1]["error"]
    status, events = stream(num_frames=8, num_inference_steps=10, height=64, width=64)
    assert status == 200 and events[-1]["video"]


def test_wrong_data_type_is_refused_by_the_server(triton):
    message = send_raw(triton, tensors(num_frames=scalar("FP32", 16.0, np.float32)))
    assert "num_frames" in message and "data-type is 'FP32'" in message


def test_wrong_shape_is_refused_by_the_server(triton):
    message = send_raw(triton, tensors(num_frames=("INT32", np.array([8, 16], dtype=np.int32))))
    assert "num_frames" in message and "shape" in message


def test_client_checks_parameters_before_sending(client, photo_png):
    with pytest.raises(ValueError, match="num_frames must be between 8 and 32, got 64"):
        client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, num_frames=64))
    with pytest.raises(InvalidInputError, match="height must be a multiple of 16, got 72"):
        client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, height=72, num_inference_steps=10))


@pytest.mark.parametrize(
    ("chunk", "words"),
    [("two", "batch_chunk must be a whole number, got 'two'"), ("0", "batch_chunk 0: needs 1 or more")],
)
def test_a_part_given_a_bad_batch_chunk_names_it_and_the_next_call_is_served(triton, chunk, words):
    """The decoder's `batch_chunk` parameter (the BLS sends it; a caller of the part may too)."""
    parts = grpcclient.InferenceServerClient(triton.endpoints.grpc_url)
    latents = np.zeros((2, 4, 8, 12), np.float32)

    def decode(parameters: dict):
        tensor = grpcclient.InferInput("latents", list(latents.shape), "FP32")
        tensor.set_data_from_numpy(latents)
        return parts.infer("vae_decoder", [tensor], parameters=parameters)

    with pytest.raises(InferenceServerException, match=re.escape(words)):
        decode({"batch_chunk": chunk})
    assert decode({"batch_chunk": "1"}).as_numpy("image").shape == (2, 3, 64, 96)
