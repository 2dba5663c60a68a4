"""Generic Triton Python model serving one part with PyTorch: the `torch` runtime (i2v export --runtime torch).

Parameterised by its own `config.pbtxt`: the part is the model's name, inputs and outputs are taken by the
names it declares, the weights are `<version>/weights/` (see `i2v.serving.torch_parts`). On a GPU instance
(`kind: KIND_GPU`) the module runs on that GPU in the config's `TORCH_DTYPE` (fp16 by default), and tensors
that arrive on the GPU (the BLS passes them by DLPack) stay there; on a CPU instance it runs in fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils

from i2v.serving.torch_parts import DTYPES, WEIGHTS_DIR, load_part_module, run_part_module


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        use_gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if use_gpu else "cpu")
        requested = parameters.get("TORCH_DTYPE", "float16")
        if requested not in DTYPES:
            raise ValueError(f"{self.model_name}: TORCH_DTYPE must be one of {', '.join(DTYPES)}, got {requested!r}")
        self.dtype = DTYPES[requested] if use_gpu else torch.float32  # half precision is a GPU thing
        weights = Path(args["model_repository"]) / args["model_version"] / WEIGHTS_DIR
        self.module = load_part_module(self.model_name, weights, self.device, self.dtype)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                inputs = []
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"{self.model_name}: missing input '{name}'")
                    inputs.append(_to_torch(tensor))
                results = run_part_module(self.module, inputs, self.dtype)
                outputs = [_to_triton(n, r) for n, r in zip(self.output_names, results, strict=True)]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except Exception as exc:  # one bad request must not take the model down
                error = pb_utils.TritonError(f"{self.model_name}: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def finalize(self) -> None:
        self.module = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _to_torch(tensor) -> torch.Tensor:
    if tensor.is_cpu():
        return torch.from_numpy(tensor.as_numpy().copy())
    return torch.from_dlpack(tensor.to_dlpack())


def _to_triton(name: str, value: torch.Tensor):
    if value.is_cuda:
        return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(value))
    return pb_utils.Tensor(name, value.numpy())
