"""asyncio gRPC client: the same request as `I2VClient`, progress as an async iterator.

Cancellation is asyncio's own: cancelling the task that awaits `generate` (or leaving `stream`'s loop)
cancels the request on the server, and the task still ends with `asyncio.CancelledError`, so
`asyncio.timeout`, `TaskGroup` and `task.cancel()` behave as they do with any other library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import tritonclient.grpc.aio as grpcaio

from i2v.client.errors import GenerationCancelledError, I2VError, RateLimitedError, UnauthorizedError
from i2v.client.grpc_client import (
    SERVER_ERRORS,
    ClientBase,
    ProgressCallback,
    parse_lora_listing,
    parse_served_model,
    read_response,
    stream_request,
)
from i2v.client.types import GenerationRequest, GenerationResult, LoraAdapterInfo, Progress, ServedModel
from i2v.endpoints import GRPC_URL
from i2v.params import LORA_LIST_MODEL


class AsyncI2VClient(ClientBase):
    """`async for event in client.stream(request)` yields `Progress` per step, then the `GenerationResult`."""

    def __init__(self, url: str = GRPC_URL, **settings):
        super().__init__(url, **settings)
        self._client = grpcaio.InferenceServerClient(url, ssl=self.tls, root_certificates=self.root_certificates)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncI2VClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, method, *args, **kwargs):
        """A unary call with this client's headers; Triton's and gRPC's errors become the typed ones."""
        try:
            return await method(*args, headers=self.headers, **kwargs)
        except SERVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def wait_until_ready(self) -> None:
        """As `I2VClient.wait_until_ready`."""
        if await self._call(self._client.is_model_ready, self.model_name):
            return
        try:  # metadata, never restricted, tells an unknown name from a model not loaded
            await self._client.get_model_metadata(self.model_name, headers=self.headers)
        except SERVER_ERRORS as exc:
            raise self._not_ready(exc) from exc
        raise self._not_ready(None)

    async def served_model(self) -> ServedModel:
        """As `I2VClient.served_model`."""
        config = (await self._call(self._client.get_model_config, self.model_name, as_json=True))["config"]
        return parse_served_model(config)

    async def model_defaults(self) -> dict:
        """What the served model uses for each parameter a request leaves out (the seed: a random one)."""
        return (await self.served_model()).defaults

    async def size_step(self) -> int | None:
        """As `I2VClient.size_step`."""
        return (await self.served_model()).size_step

    async def lora_adapters(self) -> list[LoraAdapterInfo]:
        """The LoRA adapters registered on the server (what a request's `lora` may name)."""
        return parse_lora_listing(await self._call(self._client.infer, LORA_LIST_MODEL, inputs=[]))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Progress | GenerationResult]:
        """Progress events in order, then the result. Leaving the loop early cancels the request on the server."""
        call = {"model_name": self.model_name, **stream_request(request)}

        async def one_request():
            yield call

        responses = self._client.stream_infer(one_request(), stream_timeout=self.timeout_s, headers=self.headers)
        progress: list[Progress] = []
        video: GenerationResult | None = None
        try:
            # Read to the stream's end (the final flag, the status) before handing the video over: a stream reset
            # right after the video can outlive it in a proxy (the gateway's concurrent-streams count for the key).
            async for result, error in responses:
                if error is not None:
                    raise self._error(error)
                event = read_response(result)
                if isinstance(event, Progress):
                    progress.append(event)
                    yield event
                elif isinstance(event, GenerationResult):
                    event.progress = progress
                    video = event
        except SERVER_ERRORS as exc:  # gRPC's own (AioRpcError) where the stream itself fails
            raise await self._stream_error(exc) from exc
        finally:
            # No-op once the stream has ended; otherwise (the task was cancelled, the caller left the loop) the
            # server sees the cancellation and stops at its next step. asyncio.CancelledError propagates as is.
            responses.cancel()
        if video is not None:
            yield video

    async def _stream_error(self, exc: Exception) -> I2VError:
        """The typed error of a stream that failed. A server that refuses the stream before reading the request
        (Triton without the key, the gateway) may end it while grpc's asyncio client is still writing; that client
        then loses the server's status and reports "Internal error from Core" (grpc's own words, under load). A
        unary call of the same protocol asks again: Triton refuses a unary call to a decoupled model, but only
        after the key check, so nothing runs, and a key or limit refusal reads as the sync client's."""
        error = self._error(exc)
        lost = isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.INTERNAL
        if not (lost and exc.details() == "Internal error from Core"):
            return error
        try:
            await self._client.infer(self.model_name, inputs=[], headers=self.headers)
        except SERVER_ERRORS as probe:
            refusal = self._error(probe)
            if isinstance(refusal, (UnauthorizedError, RateLimitedError)):
                return refusal
        return error

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
