"""Which tenant sent a request through the gateway, and whether that tenant may use this model.

The gateway (`i2v.gateway`) sets two headers on every request it passes, replacing any a client sent, and Triton
forwards them to the model as request parameters: the tenant's name and the models it may use. nginx checks
the model of an HTTP request itself, but a gRPC request names its model inside the message, so each Python
model checks here. A request without the headers did not come through the gateway (the BLS's own calls to the
parts, an operator with Triton's key): Triton's key already guards that way in.
"""

from __future__ import annotations

import json

from i2v.params import FORBIDDEN, MODELS_HEADER, TENANT_HEADER


class ModelNotAllowedError(PermissionError):
    """The gateway's tenant may not use this model."""


def gateway_headers(request) -> dict[str, str]:
    """The gateway's headers of a Triton request ({} when it did not come through the gateway)."""
    try:
        parameters = json.loads(request.parameters() or "{}")
    except (ValueError, AttributeError):
        return {}
    return {k: v for k, v in parameters.items() if k in (TENANT_HEADER, MODELS_HEADER) and isinstance(v, str)}


def tenant_of(request) -> str | None:
    """The gateway's tenant of this request; None when sent directly."""
    return gateway_headers(request).get(TENANT_HEADER) or None


def check_model_allowed(request, model_name: str) -> None:
    """Raise `ModelNotAllowedError` when the request came through the gateway for a tenant that may not use
    `model_name`. The message starts with `FORBIDDEN`, the word the client maps to `ForbiddenError`."""
    headers = gateway_headers(request)
    if MODELS_HEADER not in headers:
        return
    allowed = [m for m in headers[MODELS_HEADER].split(",") if m]
    if model_name not in allowed:
        tenant = headers.get(TENANT_HEADER) or "unknown"
        raise ModelNotAllowedError(
            f"{FORBIDDEN}: tenant {tenant} may not use model {model_name}; its models: {', '.join(allowed) or 'none'}"
        )
