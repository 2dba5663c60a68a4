"""Synchronous gRPC client for the `i2vgen_xl` model: one streamed request, progress, result.

The model is decoupled: it answers one request with a stream of responses, one `progress` per denoising step
and a final one with the video. tritonclient's bidirectional stream carries them.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from i2v.client.errors import CancelledError, I2VError, ServerUnavailableError, error_from_server
from i2v.client.types import GenerationRequest, GenerationResult, Progress

MODEL_NAME = "i2vgen_xl"
API_KEY_HEADER = "triton-grpc-protocol-api-key"
ProgressCallback = Callable[[int, int], None]  # (step, total)

_INPUT_TYPES = {
    "negative_prompt": ("BYTES", np.object_),
    "height": ("INT32", np.int32),
    "width": ("INT32", np.int32),
    "num_frames": ("INT32", np.int32),
    "fps": ("INT32", np.int32),
    "num_inference_steps": ("INT32", np.int32),
    "guidance_scale": ("FP32", np.float32),
    "seed": ("INT64", np.int64),
    "decode_chunk_size": ("INT32", np.int32),
}


def build_inputs(request: GenerationRequest) -> list[grpcclient.InferInput]:
    """Request → Triton input tensors; parameters left as None are not sent (the server's defaults apply)."""
    values: dict[str, tuple[str, np.ndarray]] = {
        "image": ("BYTES", np.array([bytes(request.image)], dtype=np.object_)),
        "prompt": ("BYTES", np.array([request.prompt.encode()], dtype=np.object_)),
    }
    for name, value in request.parameters().items():
        if name == "prompt":
            continue
        triton_type, dtype = _INPUT_TYPES[name]
        values[name] = (triton_type, np.array([value.encode() if isinstance(value, str) else value], dtype))
    if request.return_frames:
        values["return_frames"] = ("BOOL", np.array([True], dtype=np.bool_))
    inputs = []
    for name, (triton_type, array) in values.items():
        tensor = grpcclient.InferInput(name, list(array.shape), triton_type)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def stream_request(request: GenerationRequest) -> dict:
    """The keyword arguments of one streamed inference call for `request` (validated first)."""
    request.validate()
    return {
        "inputs": build_inputs(request),
        "request_id": uuid.uuid4().hex,
        "enable_empty_final_response": True,
    }


def client_error(error: Exception) -> I2VError:
    """A Triton or gRPC error → the typed exception a caller can act on, with the server's message."""
    if isinstance(error, InferenceServerException):
        status = error.status()
        return error_from_server(f"{error.message()} ({status})" if status else error.message())
    return error_from_server(str(error))


def read_response(result) -> Progress | GenerationResult | None:
    """One streamed response → a progress event, the final result, or None (nothing to report)."""
    progress = result.as_numpy("progress")
    if progress is not None:
        return Progress(int(progress[0]), int(progress[1]))
    if not result.get_response().parameters["triton_final_response"].bool_param:
        return None
    video = result.as_numpy("video")
    if video is None:
        raise CancelledError("the server ended the request without a video (cancelled)")
    return GenerationResult(
        video=bytes(video[0]),
        metadata=json.loads(bytes(result.as_numpy("metadata")[0])),
        frames=result.as_numpy("frames"),
    )


class ClientBase:
    """Where the server is and how to talk to it; shared by `I2VClient` and `AsyncI2VClient`."""

    def __init__(
        self,
        url: str = "localhost:8001",
        *,
        api_key: str | None = None,
        model_name: str = MODEL_NAME,
        timeout_s: float | None = None,
    ):
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.headers = {API_KEY_HEADER: api_key} if api_key else None

    def _unreachable(self, exc: InferenceServerException) -> ServerUnavailableError:
        return ServerUnavailableError(f"Triton at {self.url} is unreachable: {exc.message()}")

    def _check_ready(self, ready: bool) -> None:
        if not ready:
            raise ServerUnavailableError(f"model {self.model_name!r} is not ready on {self.url}")


class I2VClient(ClientBase):
    """Generate videos on a Triton server that serves `i2vgen_xl` (blocking calls; see `AsyncI2VClient`)."""

    def __init__(self, url: str = "localhost:8001", **settings):
        super().__init__(url, **settings)
        self._client = grpcclient.InferenceServerClient(url)
        self._cancelled = threading.Event()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> I2VClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_until_ready(self) -> None:
        """Raise `ServerUnavailableError` unless the server answers and the model is loaded."""
        try:
            ready = self._client.is_model_ready(self.model_name, headers=self.headers)
        except InferenceServerException as exc:
            raise self._unreachable(exc) from exc
        self._check_ready(ready)

    def cancel(self) -> None:
        """Cancel the request in flight (call from another thread); `generate` then raises `CancelledError`."""
        self._cancelled.set()
        self._client.stop_stream(cancel_requests=True)

    def generate(self, request: GenerationRequest, on_progress: ProgressCallback | None = None) -> GenerationResult:
        """Send one request and block until its video arrives; `on_progress` sees every step."""
        call = stream_request(request)
        self._cancelled.clear()
        responses: queue.Queue = queue.Queue()
        self._client.start_stream(
            callback=lambda result, error: responses.put((result, error)),
            stream_timeout=self.timeout_s,
            headers=self.headers,
        )
        progress: list[Progress] = []
        try:
            try:
                self._client.async_stream_infer(self.model_name, **call)
            except InferenceServerException as exc:  # the stream broke; its reason went to the callback
                try:
                    error = responses.get(timeout=5)[1] or exc
                except queue.Empty:
                    error = exc
                raise client_error(error) from exc
            while True:
                result, error = responses.get()
                if self._cancelled.is_set():
                    raise CancelledError("the request was cancelled")
                if error is not None:
                    raise client_error(error)
                event = read_response(result)
                if isinstance(event, Progress):
                    progress.append(event)
                    if on_progress is not None:
                        on_progress(event.step, event.total)
                elif isinstance(event, GenerationResult):
                    event.progress = progress
                    return event
        finally:
            self._client.stop_stream()
