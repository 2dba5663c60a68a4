"""Model control on a server in explicit mode: list, load (or reload a new version), unload.

These calls belong to Triton's `model-repository` protocol, which the server restricts to the API key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from i2v.client.grpc_client import SyncClient

UNLOADING = "UNLOADING"  # Triton's state of a model between an unload's answer and its end
UNLOAD_WAIT_S = 30.0


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, ...
    reason: str


class ModelControl(SyncClient):
    def list(self) -> list[ModelState]:
        """Every model in the repository with its state, loaded or not. Changes nothing."""
        index = self._call(self._client.get_model_repository_index, as_json=True)
        return [
            ModelState(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
            for m in index.get("models", [])
        ]

    def load(self, name: str) -> None:
        """Load `name`, or reload it from the repository (new versions are picked up) without a restart."""
        self._call(self._client.load_model, name)

    def unload(self, name: str, wait_s: float = UNLOAD_WAIT_S) -> bool:
        """Unload `name` and wait until Triton has finished (it answers as soon as it has begun: the model's
        process may still be stopping). False if it was still unloading after `wait_s`."""
        self._call(self._client.unload_model, name)
        deadline = time.monotonic() + wait_s
        while any(m.name == name and m.state == UNLOADING for m in self.list()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True
