"""A TensorRT engine run by the generic part runner (`RUNTIME: tensorrt`): the UNet when it takes LoRA adapters.

Triton's TensorRT backend runs the other engines, and this one too in an export without `--tensorrt-lora`; but
an engine can only be refitted by the process that holds it, so a LoRA-ready UNet is loaded here, through
polygraphy's runner, and refitted when a request's adapter or scale differs from the last one
(`i2v.serving.lora_runtime.EngineRefits`). The engine was built refittable (`i2v export --tensorrt-lora`);
its ONNX graph stays beside it, for the weights TensorRT asks for together with the ones changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i2v.model.repository_layout import ENGINE_FILE, GRAPH_FILE


class TensorRTPart:
    """One serialized engine (`<version>/model.plan`) on this instance's GPU, its profile chosen per call."""

    def __init__(self, name: str, version: Path, output_names: list[str], args: dict, lora_files=None) -> None:
        from polygraphy.backend.common import bytes_from_path
        from polygraphy.backend.trt import TrtRunner, engine_from_bytes

        from i2v.serving.tensors import instance_device

        self.name, self.output_names = name, output_names
        self.device = instance_device(args)
        if self.device.type != "cuda":
            raise RuntimeError(f"{name}: a TensorRT engine runs on a GPU instance (instance_group kind KIND_GPU)")
        import torch

        # TensorRT and polygraphy work on the current device, not on a named one: make it this instance's GPU
        torch.cuda.set_device(self.device)
        self.engine = engine_from_bytes(bytes_from_path(str(version / ENGINE_FILE)))
        # "profile": each profile's activation memory when first used, not the largest one's up front
        self.runner = TrtRunner(self.engine, allocation_strategy="profile")
        self.runner.activate()
        self.profile = 0
        self.onnx_path = version / GRAPH_FILE
        self.refits = None
        if lora_files is not None:
            from i2v.serving.lora_runtime import EngineRefits

            self.refits = EngineRefits(version, lora_files, self.refit)

    def __call__(self, inputs: list, lora=None, chunk: int | None = None) -> list:
        import torch

        from i2v.serving.tensors import to_torch, to_triton

        if chunk is not None:  # the BLS chunks only the Python-backend runtimes' decoder calls
            raise ValueError("a TensorRT part runs each call whole: it takes no batch chunks")
        if self.refits is not None:
            self.refits.select(lora)
        feeds = {t.name(): to_torch(t, self.device).contiguous() for t in inputs}
        # polygraphy runs the engine on a stream of its own: the inputs' copies queued on torch's finish first
        torch.cuda.current_stream(self.device).synchronize()
        profile = self.profile_for({name: tuple(value.shape) for name, value in feeds.items()})
        if profile != self.profile:
            self.runner.set_profile(profile)
            self.profile = profile
        outputs = self.runner.infer(feeds, copy_outputs_to_host=False)
        results = {}
        for name in self.output_names:
            value = outputs[name]
            results[name] = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value.numpy()))
        return to_triton(results)

    def profile_for(self, shapes: dict[str, tuple[int, ...]]) -> int:
        """The first optimization profile whose ranges hold every input's shape (the BLS refuses other shapes
        before any part runs; this names them if one gets here)."""
        for index in range(self.engine.num_optimization_profiles):
            if all(_within(self.engine.get_tensor_profile_shape(name, index), shape) for name, shape in shapes.items()):
                return index
        raise ValueError(f"{self.name}: no optimization profile of the engine holds the input shapes {shapes}")

    def refit(self, weights: dict[str, np.ndarray]) -> None:
        refit_engine(self.engine, weights, self.onnx_path)

    def close(self) -> None:
        self.runner.deactivate()
        self.engine = None


def refit_engine(engine, weights: dict[str, np.ndarray], onnx_path: Path) -> None:
    """Set `weights` ({ONNX initializer name: array}, the names TensorRT's ONNX parser gave the refittable
    weights) in `engine`, in the dtype it holds each in. Weights TensorRT needs together with those
    (`get_missing_weights`) come from the graph at `onnx_path`, and `weights` go on top of them."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    refitter = trt.Refitter(engine, logger)
    held = []  # TensorRT reads the arrays when it refits: they live until then

    def apply() -> None:
        for name, array in weights.items():
            half = refitter.get_weights_prototype(name).dtype == trt.DataType.HALF
            value = np.ascontiguousarray(array, dtype=np.float16 if half else np.float32)
            held.append(value)
            if not refitter.set_named_weights(name, trt.Weights(value)):
                raise RuntimeError(f"TensorRT refused the weights of {name} {list(value.shape)}")

    apply()
    if refitter.get_missing_weights():
        if not trt.OnnxParserRefitter(refitter, logger).refit_from_file(str(onnx_path)):
            raise RuntimeError(f"TensorRT could not read the base weights from {onnx_path}")
        apply()
    if not refitter.refit_cuda_engine():
        raise RuntimeError("TensorRT could not refit the engine")


def _within(profile_shapes, shape: tuple[int, ...]) -> bool:
    low, _, high = (tuple(int(d) for d in dims) for dims in profile_shapes)
    return len(low) == len(shape) and all(lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True))
