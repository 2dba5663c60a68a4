"""`i2v export`: load a model, export its five parts to ONNX, check them against PyTorch, write the repository."""

from __future__ import annotations

import tempfile
from pathlib import Path

from i2v.export.onnx_export import export_all
from i2v.export.repository import DEFAULT_MAX_QUEUE_SIZE, write_model_repository
from i2v.export.sources import load_pipeline
from i2v.export.validate import check_all


def export_model_repository(
    source: str, repository: Path, *, check: bool = True, max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
) -> Path:
    """Export `source` ('tiny', a diffusers folder or a hub id) into a Triton model repository."""
    pipe = load_pipeline(source)
    with tempfile.TemporaryDirectory(prefix="i2v-onnx-") as work:
        paths = export_all(pipe, Path(work))
        if check:
            check_all(pipe, paths)
        return write_model_repository(
            pipe, paths, Path(repository), source=str(source), max_queue_size=max_queue_size
        )
