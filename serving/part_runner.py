"""Generic Triton Python model serving one part: every part model of the Python-backend runtimes.

The model is parameterised by its own `config.pbtxt` alone: the part is the model's name, inputs and outputs
are taken by the names it declares, and the `RUNTIME` parameter says what runs it:

- `onnxruntime`: the graph `<version>/model.onnx` in ONNX Runtime (the embedded server's default);
- `tensorrt`: the serialized engine `<version>/model.plan`, the UNet's when it takes LoRA adapters
  (`i2v.serving.tensorrt_part`: refitted per adapter);
- `torch`: the diffusers/transformers component saved in `<version>/weights/` (`i2v.model.modules`).
  On a GPU instance (`kind: KIND_GPU`) it runs on that GPU in the config's `TORCH_DTYPE` (fp16 by default)
  and tensors that arrive on the GPU (the BLS passes them by DLPack) stay there; on a CPU instance, fp32.
  A GPU instance without a working CUDA fails to load, naming the cause (`i2v.serving.tensors`).

A call may carry the request parameter `batch_chunk` (`i2v.model.parts.BATCH_CHUNK_PARAMETER`): the part then
runs on slices of that many along its inputs' first axis and returns them concatenated, so the BLS sends the
VAE decoder several decode chunks in one call, each as it would have been computed alone.

In NVIDIA's container the parts can be native `tensorrt_plan` models instead; the BLS calls them by name and
cannot tell the difference (it sends a native decoder one chunk a call).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from i2v.model.info import DEFAULT_RUNTIME, NO_COMPILE, RUNTIMES
from i2v.model.lora_registry import lora_dir
from i2v.model.parts import (
    BATCH_CHUNK_PARAMETER,
    DEFAULT_TORCH_DTYPE,
    RUNTIME_PARAMETER,
    TORCH_COMPILE_PARAMETER,
    TORCH_DTYPE_PARAMETER,
)
from i2v.model.repository_layout import GRAPH_FILE, LORA_TARGETS_FILE, WEIGHTS_FOLDER
from i2v.params import OUT_OF_MEMORY
from i2v.serving.stub import use_utf8_text
from i2v.serving.tenancy import ModelNotAllowedError, check_model_allowed


class OnnxRuntimePart:
    """One ONNX graph in an ONNX Runtime session (CPU)."""

    def __init__(self, version: Path, output_names: list[str], lora_files=None) -> None:
        from i2v.serving.onnxruntime_session import open_session

        self.output_names = output_names
        self.path = version / GRAPH_FILE
        self.session = open_session(self.path)
        self.loras = None
        if lora_files is not None:
            from i2v.serving.lora_runtime import OnnxLoraSessions

            self.loras = OnnxLoraSessions(version, lora_files, open_session)

    def __call__(self, inputs: list, lora=None, chunk: int | None = None) -> list:
        from i2v.serving.onnxruntime_session import open_session

        names = [t.name() for t in inputs]
        arrays = [np.ascontiguousarray(t.as_numpy()) for t in inputs]
        session = None
        try:
            if lora is not None:
                session = self.loras.session(lora)
            elif self.session is None:  # given back after an allocation failed; opened again for this request
                session = self.session = open_session(self.path)
            else:
                session = self.session
            results = in_chunks(
                lambda part: session.run(self.output_names, dict(zip(names, part, strict=True))),
                arrays,
                chunk,
                np.concatenate,
            )
        except Exception as exc:  # ONNX Runtime raises one type for every failure; its words say which
            if "Failed to allocate memory" not in str(exc):
                raise
            # The failed session's memory arena goes back to the system; the next request opens a new one
            if lora is None:
                self.session = None
            else:
                self.loras.close(lora)
            del session
            raise MemoryError(f"{OUT_OF_MEMORY}: ONNX Runtime could not allocate this request's buffers") from None
        return [pb_utils.Tensor(n, r) for n, r in zip(self.output_names, results, strict=True)]


class TorchPart:
    """The part's PyTorch module, on this instance's GPU in `TORCH_DTYPE` or on the CPU in fp32."""

    def __init__(
        self, name: str, version: Path, output_names: list[str], args: dict, parameters: dict, lora_files=None
    ) -> None:
        import torch

        from i2v.model.modules import DTYPES, compile_part, load_part_module
        from i2v.serving.tensors import instance_device

        self.device = instance_device(args)
        requested = parameters.get(TORCH_DTYPE_PARAMETER, DEFAULT_TORCH_DTYPE)
        if requested not in DTYPES:
            raise ValueError(f"{name}: TORCH_DTYPE must be one of {', '.join(DTYPES)}, got {requested!r}")
        self.dtype = DTYPES[requested] if self.device.type == "cuda" else torch.float32  # half precision: GPU only
        self.output_names = output_names
        module = load_part_module(name, version / WEIGHTS_FOLDER, self.device, self.dtype)
        self.name, self.compile_mode = name, parameters.get(TORCH_COMPILE_PARAMETER, NO_COMPILE)
        self.module = compile_part(module, self.compile_mode)
        # A CUDA graph replays the base weights: a request with a LoRA runs the module itself
        self.lora_module = module if self.compile_mode == "cuda-graphs" else self.module
        self.calls = 0
        self.adapters = None
        if lora_files is not None:  # PEFT wraps the UNet's own layers; the compiled module shares them
            from i2v.serving.lora_runtime import PeftAdapters

            self.adapters = PeftAdapters(module.unet, lora_files)

    def __call__(self, inputs: list, lora=None, chunk: int | None = None) -> list:
        import time

        import torch

        from i2v.model.modules import run_part_module
        from i2v.serving.tensors import to_torch, to_triton

        start = time.perf_counter()
        if self.adapters is not None:
            self.adapters.select(lora)
        try:
            module = self.module if lora is None else self.lora_module
            tensors = [to_torch(t, self.device) for t in inputs]
            results = in_chunks(lambda part: run_part_module(module, part, self.dtype), tensors, chunk, torch.cat)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()  # the cached blocks go back, for the next request
            raise MemoryError(f"{OUT_OF_MEMORY}: PyTorch could not allocate this request's tensors") from None
        self.calls += 1
        if self.calls == 1 and self.compile_mode != NO_COMPILE:  # the warm-up request, while the model loads
            seconds, cache = time.perf_counter() - start, compile_cache_use()
            pb_utils.Logger.log_info(
                f"{self.name}: compiled ({self.compile_mode}) for the warm-up shapes in {seconds:.1f} s{cache}"
            )
        return to_triton(dict(zip(self.output_names, results, strict=True)))

    def close(self) -> None:
        import torch

        self.module = self.lora_module = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def compile_cache_use() -> str:
    """What TorchInductor's compile cache gave this process so far, for the log: graphs loaded, of those needed."""
    import os

    from torch._dynamo.utils import counters  # PyTorch's own tally, as its compile-cache tutorial reads it

    from i2v.model.modules import INDUCTOR_CACHE_ENV

    hits, misses = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
    if not hits + misses:
        return ""  # nothing went through TorchInductor (CUDA graphs)
    return f"; compile cache {os.environ.get(INDUCTOR_CACHE_ENV)}: {hits} of {hits + misses} graphs from it"


def in_chunks(run: Callable[[list], Sequence], inputs: list, chunk: int | None, concatenate: Callable) -> list:
    """`run` on slices of `chunk` along the first axis of every input, each output concatenated, as the
    caller would have called it chunk by chunk (the same shapes: the same numbers); one run without `chunk`."""
    batch = len(inputs[0])
    if chunk is None or chunk >= batch:
        return list(run(inputs))
    if chunk < 1 or any(len(value) != batch for value in inputs):
        raise ValueError(f"{BATCH_CHUNK_PARAMETER} {chunk}: needs 1 or more, and the batch first in every input")
    results = [run([value[i : i + chunk] for value in inputs]) for i in range(0, batch, chunk)]
    return [concatenate(outputs) for outputs in zip(*results, strict=True)]


def requested_chunk(raw: str | None) -> int | None:
    """The call's `batch_chunk` (the BLS sends it as a string), from the request's parameters as JSON."""
    chunk = json.loads(raw or "{}").get(BATCH_CHUNK_PARAMETER)
    if chunk is None:
        return None
    if isinstance(chunk, bool) or not str(chunk).isdigit():
        raise ValueError(f"{BATCH_CHUNK_PARAMETER} must be a whole number, got {chunk!r}")
    return int(chunk)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        use_utf8_text()
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        output_names = [t["name"] for t in config["output"]]
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        runtime = parameters.get(RUNTIME_PARAMETER, DEFAULT_RUNTIME)
        version = Path(args["model_repository"]) / args["model_version"]
        lora_files = None
        if (version / LORA_TARGETS_FILE).is_file():  # the UNet: LoRA adapters per request
            from i2v.serving.lora_runtime import AdapterFiles

            lora_files = AdapterFiles(lora_dir(Path(args["model_repository"]).parent))
        self.lora = lora_files is not None
        if runtime == "onnxruntime":
            self.part = OnnxRuntimePart(version, output_names, lora_files)
        elif runtime == "torch":
            self.part = TorchPart(self.model_name, version, output_names, args, parameters, lora_files)
        elif runtime == "tensorrt":
            from i2v.serving.tensorrt_part import TensorRTPart

            self.part = TensorRTPart(self.model_name, version, output_names, args, lora_files)
        else:
            choices = ", ".join(RUNTIMES)
            raise ValueError(f"{self.model_name}: RUNTIME must be one of {choices}, got {runtime!r}")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                check_model_allowed(request, self.model_name)  # a part called through the gateway
                inputs = []
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"{self.model_name}: missing input '{name}'")
                    inputs.append(tensor)
                lora = self.requested_lora(request)
                outputs = self.part(inputs, lora, chunk=requested_chunk(request.parameters()))
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except ModelNotAllowedError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            except Exception as exc:  # one bad request must not take the model down
                error = pb_utils.TritonError(f"{self.model_name}: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def requested_lora(self, request):
        """The LoRA the BLS passed with this call (`i2v.serving.lora_runtime`), or None for the base model."""
        from i2v.serving.lora_runtime import LoraChoice

        choice = LoraChoice.from_parameters(request.parameters())
        if choice is not None and not self.lora:
            raise ValueError(f"{self.model_name}: this part takes no LoRA adapters (no {LORA_TARGETS_FILE})")
        return choice

    def finalize(self) -> None:
        if hasattr(self.part, "close"):
            self.part.close()
        self.part = None
