"""Exceptions per failure kind, each carrying the server's own message."""

from __future__ import annotations


class I2VError(Exception):
    """Base class of every client error."""


class InvalidInputError(I2VError):
    """The request was refused for a bad image or parameter; the message names it."""


class OverloadedError(I2VError):
    """The server's queue is full; try again later."""


class CancelledError(I2VError):
    """The request was cancelled before it finished."""


class ServerUnavailableError(I2VError):
    """The server cannot be reached or the model is not ready."""


class UnauthorizedError(I2VError):
    """The server needs an API key, or refused the one sent."""


class GenerationTimeoutError(I2VError, TimeoutError):
    """The request ran past the client's timeout and was cancelled."""


class GenerationError(I2VError):
    """The server accepted the request but failed while generating."""


def error_from_server(message: str) -> I2VError:
    """Map a Triton error message to the exception a caller can act on."""
    text = message.lower()
    if "invalid input" in text or "invalid argument" in text or "data-type is" in text:
        return InvalidInputError(message)
    if "exceeds maximum queue size" in text or "resource_exhausted" in text:
        return OverloadedError(message)
    if "protocol is restricted" in text or "api-key" in text or "unauthenticated" in text:
        return UnauthorizedError(message)
    if "deadline" in text:
        return GenerationTimeoutError(message)
    if "cancel" in text:
        return CancelledError(message)
    if "unavailable" in text or "failed to connect" in text or "not ready" in text or "unknown model" in text:
        return ServerUnavailableError(message)
    return GenerationError(message)
