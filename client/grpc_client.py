"""Synchronous gRPC client for the `i2vgen_xl` model: one streamed request, progress, result.

The model is decoupled: it answers one request with a stream of responses, one `progress` per denoising step
and a final one with the video. tritonclient's bidirectional stream carries them.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import uuid
from collections.abc import Callable

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from i2v.client.errors import (
    GenerationCancelledError,
    GenerationError,
    I2VError,
    InvalidInputError,
    ServerUnavailableError,
    UnknownModelError,
    error_from_server,
)
from i2v.client.types import GenerationRequest, GenerationResult, LoraAdapterInfo, Progress, ServedModel
from i2v.endpoints import GRPC_URL
from i2v.params import (
    API_KEY_HEADER,
    CONFIG_DEFAULT_PREFIX,
    CONFIG_SIZE_STEP,
    FRAMES_OUTPUT,
    IMAGE_INPUT,
    LORA_LIST_MODEL,
    LORA_LIST_OUTPUT,
    METADATA_OUTPUT,
    MODEL_NAME,
    PROGRESS_OUTPUT,
    VIDEO_OUTPUT,
    parameter,
    parameters,
)

ProgressCallback = Callable[[int, int], None]  # (step, total)


def build_inputs(request: GenerationRequest) -> list[grpcclient.InferInput]:
    """Request → Triton input tensors, typed by the parameter table; parameters left out are not sent (the
    server's defaults apply)."""
    image = np.array([bytes(request.image)], np.object_)
    tensors: dict[str, tuple[str, np.ndarray]] = {IMAGE_INPUT: ("BYTES", image)}
    for name, value in request.parameters().items():
        dtype = parameter(name).triton_dtype
        element = value.encode() if isinstance(value, str) else value
        tensors[name] = (dtype, np.array([element], dtype=triton_to_np_dtype(dtype)))
    inputs = []
    for name, (triton_type, array) in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), triton_type)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def parse_served_model(config: dict) -> ServedModel:
    """The served model's defaults and size step from its config (`get_model_config(..., as_json=True)
    ["config"]`), typed by the parameter table; parameters the server does not list keep the table's defaults."""
    published = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
    defaults = {}
    for entry in parameters():
        if not entry.model_default:
            continue
        text = published.get(CONFIG_DEFAULT_PREFIX + entry.name)
        if text is None:
            defaults[entry.name] = entry.default
        elif entry.type is bool:
            defaults[entry.name] = text.lower() == "true"
        else:
            defaults[entry.name] = entry.type(text)
    size_step = published.get(CONFIG_SIZE_STEP)
    return ServedModel(defaults, int(size_step) if size_step else None)


def parse_lora_listing(result) -> list[LoraAdapterInfo]:
    """The listing model's answer (`i2v.serving.lora_listing`) → the registered adapters, by name."""
    try:
        entries = json.loads(bytes(result.as_numpy(LORA_LIST_OUTPUT)[0]))
        return [LoraAdapterInfo.from_listing(entry) for entry in entries]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise GenerationError(f"the server's LoRA listing is malformed ({type(exc).__name__}: {exc})") from None


def stream_request(request: GenerationRequest) -> dict:
    """The keyword arguments of one streamed inference call for `request` (validated first)."""
    request.validate()
    return {
        "inputs": build_inputs(request),
        "request_id": uuid.uuid4().hex,
        "enable_empty_final_response": True,
    }


# What a call to the server raises: tritonclient's wrapper, or gRPC's own where tritonclient lets it through
# (the asyncio client's stream raises `grpc.aio.AioRpcError`).
SERVER_ERRORS = (InferenceServerException, grpc.RpcError)


def client_error(error: Exception, url: str | None = None) -> I2VError:
    """A Triton or gRPC error → the typed exception a caller can act on, with the server's message (`url`: the
    server's address, for the messages that name it)."""
    if isinstance(error, InferenceServerException):
        return error_from_server(error.message() or "", error.status(), url)
    if isinstance(error, grpc.RpcError) and hasattr(error, "details"):  # grpc.aio.AioRpcError, grpc's own
        return error_from_server(error.details() or "", str(error.code()), url)
    return error_from_server(str(error), None, url)


def read_response(result) -> Progress | GenerationResult | None:
    """One streamed response → a progress event, the final result, or None (nothing to report)."""
    progress = result.as_numpy(PROGRESS_OUTPUT)
    if progress is not None:
        return Progress(int(progress[0]), int(progress[1]))
    if not result.get_response().parameters["triton_final_response"].bool_param:
        return None
    video = result.as_numpy(VIDEO_OUTPUT)
    if video is None:
        raise GenerationCancelledError("the server ended the request without a video (cancelled)")
    return GenerationResult(
        video=bytes(video[0]),
        metadata=json.loads(bytes(result.as_numpy(METADATA_OUTPUT)[0])),
        frames=result.as_numpy(FRAMES_OUTPUT),
    )


class ClientBase:
    """Where the server is and how to talk to it; shared by every client of this package."""

    def __init__(
        self,
        url: str = GRPC_URL,
        *,
        api_key: str | None = None,
        model_name: str = MODEL_NAME,
        timeout_s: float | None = None,
        tls: bool = False,
        ca_file: str | None = None,
    ):
        """`tls`: speak TLS (a gateway's public port), trusting `ca_file` (PEM) or else the system's CAs."""
        self.url = url
        self.tls = tls or bool(ca_file)
        if ca_file and not os.access(ca_file, os.R_OK):
            raise InvalidInputError(f"CA file {ca_file} cannot be read (a PEM file of the gateway's CA)")
        self.root_certificates = str(ca_file) if ca_file else None
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.headers = {API_KEY_HEADER: api_key} if api_key else None

    def _error(self, error: Exception) -> I2VError:
        return client_error(error, self.url)

    def _not_ready(self, metadata_error: Exception | None) -> I2VError:
        """Why `model_name` is not ready, from what asking for its metadata raised: a name the server does not
        know (`UnknownModelError`, not retryable), or a model that is not loaded (yet)."""
        error = self._error(metadata_error) if metadata_error is not None else None
        if isinstance(error, UnknownModelError):
            return error
        return ServerUnavailableError(f"model {self.model_name!r} is not ready on the server at {self.url}")


class SyncClient(ClientBase):
    """A blocking gRPC connection, closed with the client (`with` or `close()`)."""

    def __init__(self, url: str = GRPC_URL, **settings):
        super().__init__(url, **settings)
        self._client = grpcclient.InferenceServerClient(url, ssl=self.tls, root_certificates=self.root_certificates)

    def close(self) -> None:
        self._client.close()

    def model_statistics(self, model_name: str) -> dict:
        """Triton's own counters of one model (calls; time queued, computing, handing tensors), as its JSON."""
        return self._call(self._client.get_inference_statistics, model_name, as_json=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, *args, **kwargs):
        """A unary call with this client's headers; Triton's errors become the typed ones."""
        try:
            return method(*args, headers=self.headers, **kwargs)
        except SERVER_ERRORS as exc:
            raise self._error(exc) from exc


class I2VClient(SyncClient):
    """Generate videos on a Triton server that serves `i2vgen_xl` (blocking calls; see `AsyncI2VClient`)."""

    def __init__(self, url: str = GRPC_URL, **settings):
        super().__init__(url, **settings)
        self._cancelled = threading.Event()

    def wait_until_ready(self) -> None:
        """Raise `ServerUnavailableError` unless the server answers and the model is loaded (`UnknownModelError`
        where the server has no model of that name)."""
        if self._call(self._client.is_model_ready, self.model_name):
            return
        try:  # metadata, never restricted, tells an unknown name from a model not loaded
            self._client.get_model_metadata(self.model_name, headers=self.headers)
        except SERVER_ERRORS as exc:
            raise self._not_ready(exc) from exc
        raise self._not_ready(None)

    def served_model(self) -> ServedModel:
        """The served model's defaults and size step, read in one call."""
        config = self._call(self._client.get_model_config, self.model_name, as_json=True)["config"]
        return parse_served_model(config)

    def model_defaults(self) -> dict:
        """What the served model uses for each parameter a request leaves out (the seed: a random one)."""
        return self.served_model().defaults

    def size_step(self) -> int | None:
        """The multiple that height and width must be, for `request.validate(client.size_step())`."""
        return self.served_model().size_step

    def lora_adapters(self) -> list[LoraAdapterInfo]:
        """The LoRA adapters registered on the server (what a request's `lora` may name)."""
        return parse_lora_listing(self._call(self._client.infer, LORA_LIST_MODEL, inputs=[]))

    def cancel(self) -> None:
        """Cancel the request in flight (call from another thread); `generate` then raises
        `GenerationCancelledError`."""
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
        answered = False  # the server ended the request: its stream can close; otherwise the request is cancelled
        try:
            try:
                self._client.async_stream_infer(self.model_name, **call)
            except SERVER_ERRORS as exc:  # the stream broke; its reason went to the callback
                try:
                    error = responses.get(timeout=5)[1] or exc
                except queue.Empty:
                    error = exc
                raise self._error(error) from exc
            while True:
                result, error = responses.get()
                if self._cancelled.is_set():
                    raise GenerationCancelledError("the request was cancelled")
                if error is not None:
                    answered = True
                    raise self._error(error)
                event = read_response(result)
                if isinstance(event, Progress):
                    progress.append(event)
                    if on_progress is not None:
                        on_progress(event.step, event.total)
                elif isinstance(event, GenerationResult):
                    answered = True
                    event.progress = progress
                    return event
        finally:
            # Left early (Ctrl-C, an exception in `on_progress`): the server stops the request at its next step,
            # rather than finishing a video nobody reads while the stream is waited for.
            self._client.stop_stream(cancel_requests=not answered)
