"""Exceptions per failure kind, each carrying the server's own message.

A server error is classified by its gRPC status code first (what the server meant), and only where no code
says enough by its message: a message that merely mentions "unavailable" does not make a failed generation
look like a server that is down.
"""

from __future__ import annotations


class I2VError(Exception):
    """Base class of every client error."""


class InvalidInputError(I2VError):
    """The request was refused for a bad image or parameter; the message names it."""


class OverloadedError(I2VError):
    """The server's queue is full; try again later."""


class GenerationCancelledError(I2VError):
    """The request was cancelled on the server (`I2VClient.cancel`, or the server stopped it).

    Not `asyncio.CancelledError`: cancelling an asyncio task that awaits the client still raises asyncio's
    own, so `asyncio.timeout`, `TaskGroup` and `task.cancel()` work as they do everywhere else.
    """


class ServerUnavailableError(I2VError):
    """The server cannot be reached or the model is not ready."""


class UnauthorizedError(I2VError):
    """The server needs an API key, or refused the one sent."""


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


def error_from_server(message: str, status: str | None = None) -> I2VError:
    """The exception a caller can act on, for a Triton error message and its gRPC status code."""
    code = (status or "").rsplit(".", 1)[-1].upper()
    text = message.lower()
    # Triton answers a full queue, and a restricted protocol without the key, with UNAVAILABLE: the
    # message tells these apart from a server that is down.
    if "exceeds maximum queue size" in text:
        return OverloadedError(message)
    if "protocol is restricted" in text or "api-key" in text:
        return UnauthorizedError(message)
    if code in STATUS_ERRORS:
        return STATUS_ERRORS[code](message)
    return _error_from_message(message)


def _error_from_message(message: str) -> I2VError:
    """For errors that come without a status code (the connection, the stream)."""
    text = message.lower()
    if "invalid input" in text or "invalid argument" in text:
        return InvalidInputError(message)
    if "deadline" in text:
        return GenerationTimeoutError(message)
    if any(s in text for s in ("failed to connect", "unavailable", "connection refused", "not ready", "unknown model")):
        return ServerUnavailableError(message)
    return GenerationError(message)
