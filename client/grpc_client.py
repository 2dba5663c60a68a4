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

from i2v.client.errors import CancelledError, ServerUnavailableError, error_from_server
from i2v.client.types import GenerationRequest, GenerationResult

MODEL_NAME = "i2vgen_xl"
API_KEY_HEADER = "triton-grpc-protocol-api-key"
ProgressCallback = Callable[[int, int], None]

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


class I2VClient:
    """Generate videos on a Triton server that serves `i2vgen_xl`."""

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
        self._client = grpcclient.InferenceServerClient(url)
        self._cancelled = threading.Event()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> I2VClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_until_ready(self) -> None:
        try:
            ready = self._client.is_model_ready(self.model_name, headers=self.headers)
        except InferenceServerException as exc:
            raise ServerUnavailableError(f"Triton at {self.url} is unreachable: {exc.message()}") from exc
        if not ready:
            raise ServerUnavailableError(f"model {self.model_name!r} is not ready on {self.url}")

    def cancel(self) -> None:
        """Cancel the request in flight (from another thread); `generate` then raises `CancelledError`."""
        self._cancelled.set()
        self._client.stop_stream(cancel_requests=True)

    def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> GenerationResult:
        request.validate()
        self._cancelled.clear()
        responses: queue.Queue = queue.Queue()
        self._client.start_stream(
            callback=lambda result, error: responses.put((result, error)),
            stream_timeout=self.timeout_s,
            headers=self.headers,
        )
        progress: list[tuple[int, int]] = []
        try:
            self._client.async_stream_infer(
                self.model_name,
                build_inputs(request),
                request_id=uuid.uuid4().hex,
                enable_empty_final_response=True,
            )
            while True:
                result, error = responses.get()
                if self._cancelled.is_set():
                    raise CancelledError("the request was cancelled")
                if error is not None:
                    message = error.message() if isinstance(error, InferenceServerException) else str(error)
                    status = error.status() if isinstance(error, InferenceServerException) else None
                    raise error_from_server(f"{message} ({status})" if status else message)
                if result.as_numpy("progress") is not None:
                    step, total = (int(v) for v in result.as_numpy("progress"))
                    progress.append((step, total))
                    if on_progress is not None:
                        on_progress(step, total)
                if result.get_response().parameters["triton_final_response"].bool_param:
                    return self._final_result(result, progress)
        finally:
            self._client.stop_stream()

    @staticmethod
    def _final_result(result, progress) -> GenerationResult:
        video = result.as_numpy("video")
        if video is None:
            raise CancelledError("the server ended the request without a video (cancelled)")
        return GenerationResult(
            video=bytes(video[0]),
            metadata=json.loads(bytes(result.as_numpy("metadata")[0])),
            frames=result.as_numpy("frames"),
            progress=progress,
        )
