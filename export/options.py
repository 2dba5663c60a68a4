"""The export's choices and defaults, in a module light enough for `i2v --help` (no torch, no onnx)."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "gpu")  # where the torch runtime runs; auto: the GPU when this machine has CUDA
# TensorRT engines compared with the fp32 PyTorch parts at which profiles' opt shapes (the first: the default)
ENGINE_CHECKS = ("all", "smallest", "none")
# Requests that may wait while one is generated; beyond that the server refuses at once.
DEFAULT_MAX_QUEUE_SIZE = 4
# How the serving Triton sizes a TensorRT engine's execution contexts: "static" (24.10, the compose image: each
# at the engine's largest profile) or "on-profile-change" (25.05+: each at its own profile, when first used)
ALLOCATIONS = ("static", "on-profile-change")
DEFAULT_ALLOCATION = ALLOCATIONS[0]
