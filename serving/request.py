"""A request's input tensors → validated `GenerationParams`, by the parameter table (`i2v.params`).

Kept free of Triton and torch: the BLS hands in each input as the numpy array Triton gave it (None when the
request left it out), so the same reading is tested without a server.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np

from i2v.params import IMAGE_INPUT, GenerationParams, InvalidParameterError, Parameter, model_defaults, parameters


def read_parameters(
    arrays: Mapping[str, np.ndarray | None], defaults: Mapping[str, Any], size_multiple: int
) -> GenerationParams:
    """Every parameter of the table: the request's value, else the model's default, else the table's; a seed
    left out is drawn at random (and reported back in the metadata). Raises `InvalidParameterError`."""
    values = model_defaults(dict(defaults))
    for entry in parameters():
        array = arrays.get(entry.name)
        if array is not None:
            values[entry.name] = _scalar(entry, array)
        elif entry.required:
            raise InvalidParameterError(f"{entry.name} is required")
        elif entry.random_when_omitted:
            values[entry.name] = secrets.randbelow(2**32)
    return GenerationParams(**values).validate(size_multiple)


def check_no_unknown_fields(request_parameters: Mapping[str, Any]) -> None:
    """Triton's HTTP generate endpoint turns a JSON field that names no input into a request parameter, so a typo
    ("frames" for num_frames) would be ignored and the default used. The only parameters a request may carry are
    the headers the gateway forwards (`i2v-*`) and Triton's own (`triton_*`)."""
    unknown = sorted(k for k in request_parameters if not k.startswith(("i2v-", "triton_")))
    if unknown:
        known = ", ".join([IMAGE_INPUT, *(entry.name for entry in parameters())])
        raise InvalidParameterError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; the fields are: {known}"
        )


def _scalar(entry: Parameter, array: np.ndarray) -> Any:
    """The one value of an input tensor, as the table's type."""
    if array.size != 1:
        raise InvalidParameterError(f"{entry.name} must hold exactly one value, got shape {list(array.shape)}")
    value = array.reshape(-1)[0]
    if entry.type is str:
        data = value if isinstance(value, bytes) else str(value).encode()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParameterError(f"{entry.name} must be UTF-8 text") from None
    value = value.item() if isinstance(value, np.generic) else value
    if entry.type is int and isinstance(value, float):
        raise InvalidParameterError(f"{entry.name} must be an integer, got {value}")
    if entry.type is bool:
        return bool(value)
    return entry.type(value)
