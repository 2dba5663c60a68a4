"""Model control on a server in explicit mode: list, load (or reload a new version), unload.

These calls belong to Triton's `model-repository` protocol, which the server restricts to the API key.
"""

from __future__ import annotations

from dataclasses import dataclass

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from i2v.client.grpc_client import API_KEY_HEADER, client_error


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, ...
    reason: str


class ModelControl:
    def __init__(self, url: str = "localhost:8001", *, api_key: str | None = None):
        self.url = url
        self.headers = {API_KEY_HEADER: api_key} if api_key else None
        self._client = grpcclient.InferenceServerClient(url)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ModelControl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def list(self) -> list[ModelState]:
        """Every model in the repository with its state, loaded or not."""
        index = self._call(self._client.get_model_repository_index, headers=self.headers, as_json=True)
        return [
            ModelState(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
            for m in index.get("models", [])
        ]

    def load(self, name: str) -> None:
        """Load `name`, or reload it from the repository (new versions are picked up) without a restart."""
        self._call(self._client.load_model, name, headers=self.headers)

    def unload(self, name: str) -> None:
        self._call(self._client.unload_model, name, headers=self.headers)

    @staticmethod
    def _call(method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except InferenceServerException as exc:
            raise client_error(exc) from exc
