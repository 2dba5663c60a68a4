"""Triton Python model `i2vgen_xl_loras`: the LoRA adapters a request to `i2vgen_xl` may name, as JSON.

The UI fills its LoRA dropdown from it and `i2v lora list` prints it. It reads the registry folder the BLS
reads (`i2v.model.lora_registry`) on every call, so an adapter added or removed shows at once. It imports
neither torch nor the LoRA reader (the descriptions were written by `i2v lora add`), so it is one small CPU
process, and a listing never waits behind a video in the BLS's queue.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from i2v.model.lora_registry import describe, lora_dir
from i2v.params import LORA_LIST_OUTPUT
from i2v.serving.tenancy import ModelNotAllowedError, check_model_allowed


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.model_name = args["model_name"]
        self.folder = lora_dir(Path(args["model_repository"]).parent)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                check_model_allowed(request, self.model_name)
                listing = json.dumps(describe(self.folder)).encode()
                # JSON: [{"name", "ranks", "layers", "target_modules", "size_bytes", "checked"}, ...]
                output = pb_utils.Tensor(LORA_LIST_OUTPUT, np.array([listing], dtype=np.object_))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            except ModelNotAllowedError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            except OSError as exc:  # the registry folder could not be read
                pb_utils.Logger.log_error(f"{self.model_name}: {type(exc).__name__}: {exc}")
                message = f"{self.model_name}: the LoRA registry could not be read; the server's log has the details"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
        return responses
