"""gRPC client for the `i2vgen_xl` Triton model: `I2VClient` (blocking) and `AsyncI2VClient` (asyncio)."""

from i2v.client.errors import (
    ConnectionSettingsError,
    ForbiddenError,
    GenerationCancelledError,
    GenerationError,
    GenerationTimeoutError,
    I2VError,
    InvalidInputError,
    OutOfMemoryError,
    OverloadedError,
    RateLimitedError,
    ServerUnavailableError,
    UnauthorizedError,
    UnknownModelError,
)
from i2v.client.types import GenerationRequest, GenerationResult, LoraAdapterInfo, Progress, ServedModel

__all__ = [
    "AsyncI2VClient",
    "ConnectionSettingsError",
    "ForbiddenError",
    "GenerationCancelledError",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "GenerationTimeoutError",
    "I2VClient",
    "I2VError",
    "InvalidInputError",
    "LoraAdapterInfo",
    "OutOfMemoryError",
    "OverloadedError",
    "Progress",
    "RateLimitedError",
    "ServedModel",
    "ServerUnavailableError",
    "UnauthorizedError",
    "UnknownModelError",
]


def __getattr__(name: str):
    """Import the gRPC clients on first use, so `import i2v.client` stays light."""
    if name == "I2VClient":
        from i2v.client.grpc_client import I2VClient

        return I2VClient
    if name == "AsyncI2VClient":
        from i2v.client.aio_client import AsyncI2VClient

        return AsyncI2VClient
    raise AttributeError(name)
