"""The export's choices and defaults, in a module light enough for `i2v --help` (no torch, no onnx)."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "gpu")  # where the torch runtime runs; auto: the GPU when this machine has CUDA
ENGINE_CHECKS = ("smallest", "all", "none")  # TensorRT engines compared with ONNX Runtime at which profiles
# Requests that may wait while one is generated; beyond that the server refuses at once.
DEFAULT_MAX_QUEUE_SIZE = 4
