"""Write the Triton model repository: one model per part plus the `i2vgen_xl` BLS model.

```
<repository>/
  i2vgen_xl/    config.pbtxt, 1/model.py (the BLS), 1/pipeline/ (tokenizer, scheduler, CLIP processor, model_info.json)
  text_encoder/ config.pbtxt, 1/model.py (the generic ONNX Runtime runner), 1/model.onnx
  image_encoder/ vae_encoder/ unet/ vae_decoder/   (same shape)
```
Each `1/model.py` is a two-line module importing the real model class from the installed `i2v.serving`
package, so the Python backend runs the same, tested code that the package ships.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from i2v.export.parts import PartSpec, specs_for_pipeline
from i2v.params import GenerationParams
from i2v.serving.model_info import ModelInfo

BLS_MODEL = "i2vgen_xl"
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}

# Requests that may wait while one is generated; beyond that the server refuses at once.
DEFAULT_MAX_QUEUE_SIZE = 4

# Small defaults for the tiny model, which serves on CPU; real weights get diffusers' defaults.
TINY_DEFAULTS = {"height": 64, "width": 96, "num_frames": 16, "num_inference_steps": 25}


def model_info_for(pipe, source: str) -> ModelInfo:
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    unet_downsamples = len(pipe.unet.config.down_block_types) - 1
    defaults = {k: v for k, v in GenerationParams(prompt="-").to_dict().items() if k not in ("prompt", "seed")}
    if source == "tiny":
        defaults.update(TINY_DEFAULTS)
    return ModelInfo(
        source=source,
        vae_scale_factor=vae_scale,
        vae_scaling_factor=float(pipe.vae.config.scaling_factor),
        latent_channels=pipe.unet.config.in_channels,
        size_multiple=vae_scale * 2**unet_downsamples,
        text_len=pipe.tokenizer.model_max_length,
        defaults=defaults,
    )


def write_model_repository(
    pipe,
    onnx_paths: dict[str, Path],
    repository: Path,
    *,
    source: str,
    instance_kind: str = "KIND_CPU",
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
) -> Path:
    """Write every model of the repository for the embedded server's ONNX Runtime runtime."""
    repository = Path(repository)
    specs = specs_for_pipeline(pipe)
    for name, spec in specs.items():
        version = repository / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        target = version / "model.onnx"
        if Path(onnx_paths[name]).resolve() != target.resolve():
            shutil.copyfile(onnx_paths[name], target)
        (version / "model.py").write_text(_shim("i2v.serving.part_runner", f"ONNX Runtime runner for {name}"))
        (repository / name / "config.pbtxt").write_text(part_config(spec, instance_kind))

    version = repository / BLS_MODEL / "1"
    pipeline_dir = version / "pipeline"
    pipeline_dir.mkdir(parents=True, exist_ok=True)
    pipe.tokenizer.save_pretrained(pipeline_dir / "tokenizer")
    pipe.feature_extractor.save_pretrained(pipeline_dir / "feature_extractor")
    pipe.scheduler.save_pretrained(pipeline_dir / "scheduler")
    model_info_for(pipe, source).save(pipeline_dir)
    (version / "model.py").write_text(_shim("i2v.serving.bls", "I2VGen-XL BLS: the whole generation loop"))
    (repository / BLS_MODEL / "config.pbtxt").write_text(bls_config(max_queue_size))
    return repository


def _shim(module: str, what: str) -> str:
    return (
        f'"""{what} (written by `i2v export`; the code is `{module}`)."""\n\n'
        f"from {module} import TritonPythonModel  # noqa: F401\n"
    )


def _dims(dims) -> str:
    return "[ " + ", ".join(str(d) if isinstance(d, int) else "-1" for d in dims) + " ]"


def _tensor_block(kind: str, tensors) -> str:
    entries = []
    for t in tensors:
        named = ", ".join(str(d) for d in t.dims)
        entries.append(
            f"  {{\n    name: \"{t.name}\"\n    data_type: {TRITON_DTYPES[t.dtype]}\n"
            f"    dims: {_dims(t.dims)}  # ({named})\n  }}"
        )
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


def part_config(spec: PartSpec, instance_kind: str = "KIND_CPU") -> str:
    """config.pbtxt of one part served by the generic ONNX Runtime runner (Python backend)."""
    return (
        f"# {spec.description}\n"
        "# Runtime: ONNX Runtime inside a Python-backend model (embedded server). Written by `i2v export`.\n"
        f'name: "{spec.name}"\n'
        'backend: "python"\n'
        "max_batch_size: 0  # the batch is the first dim of every tensor; guidance batches cond + uncond\n"
        + _tensor_block("input", spec.inputs)
        + _tensor_block("output", spec.outputs)
        + f"instance_group [ {{ count: 1, kind: {instance_kind} }} ]\n"
    )


def bls_config(max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE) -> str:
    """config.pbtxt of the BLS: decoupled, so it can stream one progress response per step."""
    if max_queue_size < 1:
        raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
    return BLS_CONFIG.replace("MAX_QUEUE_SIZE", str(max_queue_size))


BLS_CONFIG = '''# I2VGen-XL image-to-video: the whole loop (preprocess, encoders, denoising, VAE decode, MP4).
# Decoupled: one response per denoising step carries `progress` ([step, total]); the last carries
# `video` (H.264 MP4 bytes), `metadata` (JSON: parameters used, seed, timings) and, on request, `frames`.
# Omitted optional inputs take the model's defaults (see 1/pipeline/model_info.json).
name: "i2vgen_xl"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
# A bounded queue: a request beyond it is refused at once ("Exceeds maximum queue size") instead of waiting
# behind minutes of work. One instance generates one video at a time; raise `count` on bigger machines.
dynamic_batching {
  default_queue_policy { max_queue_size: MAX_QUEUE_SIZE, timeout_action: REJECT }
}
input [
  { name: "image", data_type: TYPE_STRING, dims: [ 1 ] },  # encoded PNG / JPEG / WebP bytes
  { name: "prompt", data_type: TYPE_STRING, dims: [ 1 ] },
  { name: "negative_prompt", data_type: TYPE_STRING, dims: [ 1 ], optional: true },
  { name: "height", data_type: TYPE_INT32, dims: [ 1 ], optional: true },
  { name: "width", data_type: TYPE_INT32, dims: [ 1 ], optional: true },
  { name: "num_frames", data_type: TYPE_INT32, dims: [ 1 ], optional: true },
  { name: "fps", data_type: TYPE_INT32, dims: [ 1 ], optional: true },
  { name: "num_inference_steps", data_type: TYPE_INT32, dims: [ 1 ], optional: true },
  { name: "guidance_scale", data_type: TYPE_FP32, dims: [ 1 ], optional: true },
  { name: "seed", data_type: TYPE_INT64, dims: [ 1 ], optional: true },
  { name: "decode_chunk_size", data_type: TYPE_INT32, dims: [ 1 ], optional: true },
  { name: "return_frames", data_type: TYPE_BOOL, dims: [ 1 ], optional: true }
]
output [
  { name: "progress", data_type: TYPE_INT32, dims: [ 2 ] },  # [step, total]
  { name: "video", data_type: TYPE_STRING, dims: [ 1 ] },  # MP4 bytes (H.264, yuv420p, faststart)
  { name: "metadata", data_type: TYPE_STRING, dims: [ 1 ] },  # JSON
  { name: "frames", data_type: TYPE_UINT8, dims: [ -1, -1, -1, 3 ] }  # [frames, height, width, RGB]
]
instance_group [ { count: 1, kind: KIND_CPU } ]
'''
