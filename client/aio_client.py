"""asyncio gRPC client: the same request as `I2VClient`, progress as an async iterator.

Cancellation is asyncio's own: cancelling the task that awaits `generate` (or leaving `stream`'s loop)
cancels the request on the server, and the task still ends with `asyncio.CancelledError`, so
`asyncio.timeout`, `TaskGroup` and `task.cancel()` behave as they do with any other library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from i2v.client.errors import GenerationCancelledError
from i2v.client.grpc_client import (
    ClientBase,
    ProgressCallback,
    client_error,
    parse_lora_listing,
    parse_model_defaults,
    read_response,
    stream_request,
)
from i2v.client.types import GenerationRequest, GenerationResult, LoraAdapterInfo, Progress
from i2v.params import LORA_LIST_MODEL


class AsyncI2VClient(ClientBase):
    """`async for event in client.stream(request)` yields `Progress` per step, then the `GenerationResult`."""

    def __init__(self, url: str = "localhost:8001", **settings):
        super().__init__(url, **settings)
        self._client = grpcaio.InferenceServerClient(url, ssl=self.tls, root_certificates=self.root_certificates)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncI2VClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def wait_until_ready(self) -> None:
        try:
            ready = await self._client.is_model_ready(self.model_name, headers=self.headers)
        except InferenceServerException as exc:
            raise self._unreachable(exc) from exc
        self._check_ready(ready)

    async def model_defaults(self) -> dict:
        """What the served model uses for each parameter a request leaves out (the seed: a random one)."""
        try:
            config = await self._client.get_model_config(self.model_name, headers=self.headers, as_json=True)
        except InferenceServerException as exc:
            raise client_error(exc) from exc
        return parse_model_defaults(config["config"])

    async def lora_adapters(self) -> list[LoraAdapterInfo]:
        """The LoRA adapters registered on the server (what a request's `lora` may name)."""
        try:
            result = await self._client.infer(LORA_LIST_MODEL, inputs=[], headers=self.headers)
        except InferenceServerException as exc:
            raise client_error(exc) from exc
        return parse_lora_listing(result)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Progress | GenerationResult]:
        """Progress events in order, then the result. Leaving the loop early cancels the request on the server."""
        call = {"model_name": self.model_name, **stream_request(request)}

        async def one_request():
            yield call

        responses = self._client.stream_infer(one_request(), stream_timeout=self.timeout_s, headers=self.headers)
        progress: list[Progress] = []
        try:
            async for result, error in responses:
                if error is not None:
                    raise client_error(error)
                event = read_response(result)
                if isinstance(event, Progress):
                    progress.append(event)
                    yield event
                elif isinstance(event, GenerationResult):
                    event.progress = progress
                    yield event
                    return
        except InferenceServerException as exc:
            raise client_error(exc) from exc
        finally:
            # No-op once the stream has ended; otherwise (the task was cancelled, the caller left the loop) the
            # server sees the cancellation and stops at its next step. asyncio.CancelledError propagates as is.
            responses.cancel()

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> GenerationResult:
        """Await the video; cancelling the awaiting task cancels the request on the server."""
        async for event in self.stream(request):
            if isinstance(event, GenerationResult):
                return event
            if on_progress is not None:
                on_progress(event.step, event.total)
        raise GenerationCancelledError("the stream ended without a video")
