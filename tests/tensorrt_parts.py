"""`run_part` over a tensorrt repository's engines in this process (polygraphy's TrtRunner): the served tensorrt
runtime's parts without Triton, for the whole-loop check on a GPU host with TensorRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from i2v.export.profiles import part_profiles
from i2v.model.info import ModelInfo
from i2v.model.parts import specs_for_pipeline
from i2v.params import MODEL_NAME


class TensorRTParts:
    """Each call runs on the engine profile whose ranges hold its input shapes, as Triton picks it."""

    def __init__(self, model_repository: Path, pipe):
        from polygraphy.backend.trt import engine_from_bytes

        repository = Path(model_repository)
        info = ModelInfo.load(repository / MODEL_NAME / "1" / "pipeline")
        specs = specs_for_pipeline(pipe)
        self.profiles = {
            name: part_profiles(spec, info.supported_shapes, info.vae_scale_factor) for name, spec in specs.items()
        }
        self.engines = {
            name: engine_from_bytes((repository / name / "1" / "model.plan").read_bytes()) for name in specs
        }
        self.runners: dict[tuple[str, int], object] = {}

    def __call__(self, name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from polygraphy.backend.trt import TrtRunner

        feed = {k: np.ascontiguousarray(v.cpu().numpy()) for k, v in inputs.items()}
        profile = next(
            i
            for i, p in enumerate(self.profiles[name])
            if all(
                all(lo <= size <= hi for lo, size, hi in zip(p.inputs[k].min, v.shape, p.inputs[k].max, strict=True))
                for k, v in feed.items()
            )
        )
        if (name, profile) not in self.runners:
            runner = TrtRunner(self.engines[name], optimization_profile=profile)
            runner.activate()
            self.runners[(name, profile)] = runner
        outputs = self.runners[(name, profile)].infer(feed)
        return {k: torch.from_numpy(np.array(v)) for k, v in outputs.items()}

    def close(self) -> None:
        for runner in self.runners.values():
            runner.deactivate()
