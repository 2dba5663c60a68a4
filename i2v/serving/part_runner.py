"""Generic Triton Python model serving one part: every part model of the Python-backend runtimes.

The model is parameterised by its own `config.pbtxt` alone: the part is the model's name, inputs and outputs
are taken by the names it declares, and the `RUNTIME` parameter says what runs it:

- `onnxruntime`: the graph `<version>/model.onnx` in ONNX Runtime (the embedded server's default);
- `torch`: the diffusers/transformers component saved in `<version>/weights/` (`i2v.serving.torch_parts`).
  On a GPU instance (`kind: KIND_GPU`) it runs on that GPU in the config's `TORCH_DTYPE` (fp16 by default)
  and tensors that arrive on the GPU (the BLS passes them by DLPack) stay there; on a CPU instance, fp32.

In NVIDIA's container the parts can be native `tensorrt_plan` models instead; the BLS calls them by name and
cannot tell the difference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

RUNTIMES = ("onnxruntime", "torch")


class OnnxRuntimePart:
    """One ONNX graph in an ONNX Runtime session (CPU)."""

    def __init__(self, version: Path, output_names: list[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        threads = int(os.environ.get("I2V_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        self.output_names = output_names
        self.session = ort.InferenceSession(str(version / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def __call__(self, inputs: list) -> list:
        feeds = {t.name(): np.ascontiguousarray(t.as_numpy()) for t in inputs}
        results = self.session.run(self.output_names, feeds)
        return [pb_utils.Tensor(n, r) for n, r in zip(self.output_names, results, strict=True)]


class TorchPart:
    """The part's PyTorch module, on this instance's GPU in `TORCH_DTYPE` or on the CPU in fp32."""

    def __init__(self, name: str, version: Path, output_names: list[str], args: dict, parameters: dict) -> None:
        import torch

        from i2v.serving.torch_parts import DTYPES, WEIGHTS_DIR, load_part_module

        use_gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        device = torch.device(f"cuda:{args['model_instance_device_id']}" if use_gpu else "cpu")
        requested = parameters.get("TORCH_DTYPE", "float16")
        if requested not in DTYPES:
            raise ValueError(f"{name}: TORCH_DTYPE must be one of {', '.join(DTYPES)}, got {requested!r}")
        self.dtype = DTYPES[requested] if use_gpu else torch.float32  # half precision is a GPU thing
        self.output_names = output_names
        self.module = load_part_module(name, version / WEIGHTS_DIR, device, self.dtype)

    def __call__(self, inputs: list) -> list:
        import torch

        from i2v.serving.torch_parts import run_part_module

        tensors = [
            torch.from_numpy(t.as_numpy().copy()) if t.is_cpu() else torch.from_dlpack(t.to_dlpack()) for t in inputs
        ]
        results = run_part_module(self.module, tensors, self.dtype)
        return [_triton_tensor(n, r) for n, r in zip(self.output_names, results, strict=True)]

    def close(self) -> None:
        import torch

        self.module = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _triton_tensor(name: str, value):
    """A torch result as a Triton tensor: by DLPack where it is on the GPU, through numpy where on the CPU."""
    import torch

    if value.is_cuda:
        return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(value))
    return pb_utils.Tensor(name, value.numpy())


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        output_names = [t["name"] for t in config["output"]]
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        runtime = parameters.get("RUNTIME", "onnxruntime")
        version = Path(args["model_repository"]) / args["model_version"]
        if runtime == "onnxruntime":
            self.part = OnnxRuntimePart(version, output_names)
        elif runtime == "torch":
            self.part = TorchPart(self.model_name, version, output_names, args, parameters)
        else:
            raise ValueError(f"{self.model_name}: RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                inputs = []
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"{self.model_name}: missing input '{name}'")
                    inputs.append(tensor)
                responses.append(pb_utils.InferenceResponse(output_tensors=self.part(inputs)))
            except Exception as exc:  # one bad request must not take the model down
                error = pb_utils.TritonError(f"{self.model_name}: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def finalize(self) -> None:
        if hasattr(self.part, "close"):
            self.part.close()
        self.part = None
