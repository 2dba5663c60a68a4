"""Exceptions per failure kind, each carrying the server's own message.

A server error is classified by its gRPC status code first (what the server meant), and only where no code
says enough by its message: a message that merely mentions "unavailable" does not make a failed generation
look like a server that is down.
"""

from __future__ import annotations

import re

from i2v.params import (
    API_KEY_NAME,
    FORBIDDEN,
    INVALID_INPUT,
    OUT_OF_MEMORY,
    PROCESS_DIED,
    RATE_LIMITED,
    RETRY_AFTER,
    STREAMS_LIMITED,
    UNAVAILABLE,
    InvalidParameterError,
)


class I2VError(Exception):
    """Base class of every client error."""

    retryable = False  # True where the same request may succeed later, unchanged


class InvalidInputError(I2VError, InvalidParameterError):
    """The request was refused for a bad image or parameter, by the client's own checks or the server's; the
    message names it. Also an `i2v.params.InvalidParameterError` (a `ValueError`), as the table's checks raise."""


class UnknownModelError(InvalidInputError):
    """The server has no model by the name the client asked for (`model_name`): not retryable, unlike a model
    that is loading or unloaded (`ServerUnavailableError`)."""


class ConnectionSettingsError(I2VError):
    """The client's TLS settings do not fit the server's port (TLS to a plain port, plain to a TLS one, a
    certificate it does not trust): retrying cannot help, changing --tls / --ca-file does."""


class OverloadedError(I2VError):
    """The server's queue is full; try again later."""

    retryable = True


class GenerationCancelledError(I2VError):
    """The request was cancelled on the server (`I2VClient.cancel`, or the server stopped it).

    Not `asyncio.CancelledError`: cancelling an asyncio task that awaits the client still raises asyncio's
    own, so `asyncio.timeout`, `TaskGroup` and `task.cancel()` work as they do everywhere else.
    """


class ServerUnavailableError(I2VError):
    """The server cannot be reached, the model is not ready, or a process of it stopped during the request (it
    restarts by itself); try again later."""

    retryable = True


class RateLimitedError(I2VError):
    """The gateway refused the request: the tenant is over its requests per minute or concurrent streams.
    `retry_after_s` says when one more request will be let in (None when the gateway did not say)."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnauthorizedError(I2VError):
    """The server needs an API key, or refused the one sent."""


class ForbiddenError(UnauthorizedError):
    """The gateway's tenant may not use this model (its key is fine); the message lists the models it may use."""


class OutOfMemoryError(I2VError):
    """The server ran out of memory for this request (and released it): ask for fewer frames, a smaller size or a
    smaller decode_chunk_size. A request too large for the server from the start is an `InvalidInputError`."""


class GenerationTimeoutError(I2VError, TimeoutError):
    """The request ran past the client's timeout and was cancelled."""


class GenerationError(I2VError):
    """The server accepted the request but failed while generating."""


# gRPC status code (as tritonclient names it: "StatusCode.X") -> the error it means.
STATUS_ERRORS: dict[str, type[I2VError]] = {
    "INVALID_ARGUMENT": InvalidInputError,
    "OUT_OF_RANGE": InvalidInputError,
    "RESOURCE_EXHAUSTED": OverloadedError,
    "UNAUTHENTICATED": UnauthorizedError,
    "PERMISSION_DENIED": UnauthorizedError,
    "DEADLINE_EXCEEDED": GenerationTimeoutError,
    "CANCELLED": GenerationCancelledError,
    "UNAVAILABLE": ServerUnavailableError,
    "NOT_FOUND": ServerUnavailableError,  # no such model on this server
    "INTERNAL": GenerationError,
    "UNKNOWN": GenerationError,
}


def error_from_server(message: str, status: str | None = None, url: str | None = None) -> I2VError:
    """The exception a caller can act on, for a Triton or gRPC error message and its gRPC status code; `url`, the
    server's address, goes into the messages that need it (cannot connect, no such model)."""
    code = (status or "").rsplit(".", 1)[-1].upper()
    text = message.lower()
    if text.startswith(f"{FORBIDDEN}:"):  # i2v.serving.tenancy: a model the gateway's tenant may not use
        return ForbiddenError(message)
    if text.startswith((RATE_LIMITED, STREAMS_LIMITED)):  # the gateway's words (i2v.gateway), RESOURCE_EXHAUSTED
        retry = re.search(rf"{RETRY_AFTER} (\d+(?:\.\d+)?) s", text)
        return RateLimitedError(message, float(retry[1]) if retry else None)
    # Triton answers a full queue, and a restricted protocol without the key, with UNAVAILABLE: the
    # message tells these apart from a server that is down.
    if "exceeds maximum queue size" in text:
        return OverloadedError(message)
    if "protocol is restricted" in text or API_KEY_NAME in text:
        return UnauthorizedError(message)
    if OUT_OF_MEMORY in text:
        return OutOfMemoryError(message)
    where = f"the server at {url or '<unknown address>'}"
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        return ConnectionSettingsError(
            f"{where} has a TLS certificate this client does not trust: pass its CA with --ca-file (PEM) "
            f"(gRPC: {message})"
        )
    if "http1.x server" in text:  # plain gRPC to nginx's TLS port: it answers HTTP/1.1 400
        return ConnectionSettingsError(
            f"{where} did not answer plain gRPC: a TLS port (the gateway's) needs --tls (gRPC: {message})"
        )
    if "wrong_version_number" in text or "wrong version number" in text:  # TLS to a plain port
        return ConnectionSettingsError(f"{where} does not speak TLS: leave out --tls and --ca-file (gRPC: {message})")
    if code in ("", "UNAVAILABLE") and any(words in text for words in CONNECT_FAILURES):
        return ServerUnavailableError(
            f"cannot connect to {where}: is it running, and is the address right? (gRPC: {message})"
        )
    # Triton's words for a name it has never heard of; a model it knows but has not loaded "has no available
    # versions" (retryable: it may be loading).
    unknown = re.search(r"unknown model: '([^']*)' is not found", message)
    if unknown:
        return UnknownModelError(f"{where} has no model {unknown[1]!r}: check the model name (Triton: {message})")
    if code == "UNAVAILABLE" and ("stream removed" in text or "socket closed" in text):
        return ServerUnavailableError(
            f"the connection to the server broke during the request ({message}): it may be restarting; retry in a "
            "few seconds"
        )
    if PROCESS_DIED in text:  # Triton's words when the served model's own process has died
        return ServerUnavailableError(
            "the server's process for this model stopped during the request; it restarts by itself: retry in a "
            f"few seconds ({message})"
        )
    kind = STATUS_ERRORS.get(code) or _kind_from_message(text)
    if kind is ServerUnavailableError and not text.startswith(UNAVAILABLE):
        # Every ServerUnavailableError says so in its first words (the server's own begin with `UNAVAILABLE`).
        return ServerUnavailableError(f"server unavailable: {message}")
    return kind(message)


# gRPC's words when no connection could be made (refused, no such host, TLS handshake failed).
CONNECT_FAILURES = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "name resolution",
    "errors resolving",
)


def _kind_from_message(text: str) -> type[I2VError]:
    """For errors that come without a status code (the stream's own errors)."""
    if INVALID_INPUT in text or "invalid argument" in text:
        return InvalidInputError
    if "deadline" in text:
        return GenerationTimeoutError
    if any(s in text for s in (UNAVAILABLE, "not ready", "unknown model")):
        return ServerUnavailableError
    return GenerationError
