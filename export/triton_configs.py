"""The `config.pbtxt` of each model in the repository: the parts (Python-backend runner or TensorRT engines),
the `i2vgen_xl` BLS and its LoRA listing. Triton's model configuration, as text: `i2v.export.repository` writes
each one where Triton reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from string import Template

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from i2v.export.options import DEFAULT_ALLOCATION, DEFAULT_MAX_QUEUE_SIZE
from i2v.export.profiles import OptimizationProfile, config_dims
from i2v.model.info import DEFAULT_RUNTIME, NO_COMPILE, ModelInfo
from i2v.model.parts import (
    DEFAULT_TORCH_DTYPE,
    RUNTIME_PARAMETER,
    TORCH_COMPILE_PARAMETER,
    TORCH_DTYPE_PARAMETER,
    PartSpec,
    named_dims,
)
from i2v.params import (
    CONFIG_DEFAULT_PREFIX,
    CONFIG_SIZE_STEP,
    FRAMES_OUTPUT,
    IMAGE_FORMATS_TEXT,
    IMAGE_INPUT,
    LORA_LIST_MODEL,
    LORA_LIST_OUTPUT,
    METADATA_OUTPUT,
    MODEL_NAME,
    PROGRESS_OUTPUT,
    VIDEO_OUTPUT,
    model_defaults,
    parameters,
    triton_config_type,
)


def _config_type(dtype: str) -> str:
    """A part tensor's numpy dtype ("float16") as `config.pbtxt` names it (TYPE_FP16)."""
    return triton_config_type(np_to_triton_dtype(np.dtype(dtype)))


def _dims(dims: Sequence[int | str]) -> str:
    return "[ " + ", ".join(str(d) if isinstance(d, int) else "-1" for d in dims) + " ]"


def _tensor_block(kind: str, tensors, dims_of=None) -> str:
    """`input [...]` / `output [...]`; `dims_of(tensor)` overrides the spec's dims (TensorRT profiles)."""
    entries = []
    for t in tensors:
        named = ", ".join(str(d) for d in t.dims)
        dims = _dims(dims_of(t) if dims_of else t.dims)
        entries.append(
            f'  {{\n    name: "{t.name}"\n    data_type: {_config_type(t.dtype)}\n    dims: {dims}  # ({named})\n  }}'
        )
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


RUNTIME_COMMENTS = {
    "onnxruntime": "# Runtime: ONNX Runtime (1/model.onnx) inside a Python-backend model. Written by `i2v export`.\n",
    "torch": "# Runtime: the PyTorch module itself (1/weights/, save_pretrained) in a Python-backend model; on a GPU\n"
    "# instance in TORCH_DTYPE with SDPA attention, on a CPU instance in float32. Written by `i2v export`.\n",
    "tensorrt": "# Runtime: the refittable TensorRT engine (1/model.plan) in a Python-backend model, refitted\n"
    "# per LoRA adapter (i2v.serving.tensorrt_part), its graph (1/model.onnx) beside it.\n"
    "# Written by `i2v export --runtime tensorrt --tensorrt-lora`.\n",
}


def default_request_dims(info: ModelInfo) -> dict[str, int]:
    """Every named dim of the parts at the model's default request (guidance on: batch 2)."""
    params = info.default_request()
    return named_dims(params.batch, params.num_frames, params.height, params.width, info.vae_scale_factor)


def part_config(
    spec: PartSpec,
    runtime: str = DEFAULT_RUNTIME,
    instance_kind: str = "KIND_CPU",
    torch_dtype: str = DEFAULT_TORCH_DTYPE,
    torch_compile: str = NO_COMPILE,
    warmup_dims: Mapping[str, int] | None = None,
) -> str:
    """config.pbtxt of one part served by the generic Python-backend runner (`i2v.serving.part_runner`),
    which reads its `RUNTIME` parameter: the ONNX graph in ONNX Runtime, or the PyTorch module.

    A compiled part (`torch_compile` not "none") also gets Triton's `model_warmup`: one request at the
    default request's shapes (`warmup_dims`), so compilation happens while the model loads, not in a user's
    first request."""

    def entry(key: str, value: str, comment: str = "") -> str:
        return f'  {{ key: "{key}", value: {{ string_value: "{value}" }} }}' + (f"  # {comment}" if comment else "")

    parameters = [entry(RUNTIME_PARAMETER, runtime)]
    if runtime == "torch":
        parameters += [
            entry(TORCH_DTYPE_PARAMETER, torch_dtype, "float16, bfloat16 or float32"),
            entry(TORCH_COMPILE_PARAMETER, torch_compile, "torch.compile mode"),
        ]
    if runtime in ("torch", "tensorrt"):
        parameters.append(
            "  # GPU tensors from the BLS stay on the GPU (DLPack) instead of being copied to the CPU first\n"
            '  { key: "FORCE_CPU_ONLY_INPUT_TENSORS", value: { string_value: "no" } }'
        )

    warmup = ""
    if torch_compile != NO_COMPILE:
        if warmup_dims is None:
            raise ValueError(f"{spec.name}: a compiled part needs the warm-up request's dims")
        warmup = _warmup_block(spec, warmup_dims)
    return (
        f"# {spec.description}\n" + RUNTIME_COMMENTS[runtime] + f'name: "{spec.name}"\n'
        'backend: "python"\n'
        "max_batch_size: 0  # the batch is the first dim of every tensor; guidance batches cond + uncond\n"
        + _tensor_block("input", spec.inputs)
        + _tensor_block("output", spec.outputs)
        + f"instance_group [ {{ count: 1, kind: {instance_kind} }} ]\n"
        + "parameters [\n"
        + _comma_lines(parameters)
        + "\n]\n"
        + warmup
    )


def _warmup_block(spec: PartSpec, dims: Mapping[str, int]) -> str:
    """Triton's `model_warmup`: one request of random inputs at `dims`, sent while the model loads."""
    inputs = "".join(
        f'    inputs {{ key: "{t.name}", value: {{ data_type: {_config_type(t.dtype)}, '
        f"dims: {_dims([d if isinstance(d, int) else dims[d] for d in t.dims])}, random_data: true }} }}\n"
        for t in spec.inputs
    )
    return (
        "# Compiles at load: one request at the model's default request shapes\n"
        f'model_warmup [\n  {{\n    name: "default request"\n    batch_size: 1\n{inputs}  }}\n]\n'
    )


def tensorrt_part_config(
    spec: PartSpec, profiles: Sequence[OptimizationProfile], context_allocation: str = DEFAULT_ALLOCATION
) -> str:
    """config.pbtxt of one part served by its TensorRT engine (1/model.plan), one instance using every profile.

    Dims follow the profiles (`config_dims`): an axis fixed in every profile is written as its size. Triton
    picks, per request, the instance's profile whose ranges fit the input shapes; listing them all matters,
    because an instance with no `profile` list uses profile 0 only. Triton creates one execution context per
    listed profile; `context_allocation` "on-profile-change" asks Triton 25.05+ to size each for its own
    profile, when first used, instead of the engine's largest (`i2v.export.memory_plan`; 24.10 ignores it).
    """
    listed = "\n".join(f"#   {i}: {p.describe()}" for i, p in enumerate(profiles))
    profile_names = ", ".join(f'"{i}"' for i in range(len(profiles)))
    return (
        f"# {spec.description}\n"
        "# Runtime: an fp16 TensorRT engine built by `i2v export --runtime tensorrt` (polygraphy). Its\n"
        "# optimization profiles (min-opt-max per axis); the BLS refuses requests outside them:\n"
        f"{listed}\n"
        f'name: "{spec.name}"\n'
        'platform: "tensorrt_plan"\n'
        "max_batch_size: 0  # the batch is the first dim of every tensor; guidance batches cond + uncond\n"
        + _tensor_block("input", spec.inputs, lambda t: config_dims(t, profiles))
        + _tensor_block("output", spec.outputs, lambda t: config_dims(t, profiles))
        + f"instance_group [ {{ count: 1, kind: KIND_GPU, profile: [ {profile_names} ] }} ]\n"
        + (ON_PROFILE_CHANGE if context_allocation == "on-profile-change" else "")
    )


ON_PROFILE_CHANGE = (
    "# Triton 25.05+: each execution context allocates for its own profile when first used (24.10 ignores it)\n"
    'parameters [ { key: "execution_context_allocation_strategy", value: { string_value: "ON_PROFILE_CHANGE" } } ]\n'
)


def bls_config(
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    instance_kind: str = "KIND_CPU",
    defaults: Mapping | None = None,
    *,
    size_step: int,
) -> str:
    """config.pbtxt of the BLS: decoupled, so it can stream one progress response per step.

    Its inputs are the image and the parameter table's entries (all optional but the required ones); the
    model's defaults and its size step go into `parameters` (`CONFIG_DEFAULT_PREFIX`, `CONFIG_SIZE_STEP`), so
    a client can read them from the model config and check a request as the server will.
    """
    if max_queue_size < 1:
        raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
    if instance_kind not in ("KIND_CPU", "KIND_GPU"):
        raise ValueError(f"instance_kind must be KIND_CPU or KIND_GPU, got {instance_kind!r}")
    image = f'  {{ name: "{IMAGE_INPUT}", data_type: TYPE_STRING, dims: [ 1 ] }}  # encoded {IMAGE_FORMATS_TEXT} bytes'
    inputs = [image]
    for entry in parameters():
        optional = "" if entry.required else ", optional: true"
        dtype = triton_config_type(entry.triton_dtype)
        inputs.append(f'  {{ name: "{entry.name}", data_type: {dtype}, dims: [ 1 ]{optional} }}  # {entry.help}')
    defaults = model_defaults(dict(defaults or {}))
    entries = [
        f'  {{ key: "{CONFIG_DEFAULT_PREFIX}{name}", value: {{ string_value: "{_pbtxt_text(v)}" }} }}'
        for name, v in defaults.items()
    ]
    entries.append(
        f'  {{ key: "{CONFIG_SIZE_STEP}", value: {{ string_value: "{size_step}" }} }}'
        "  # height and width: multiples of this"
    )
    return BLS_CONFIG.substitute(
        model_name=MODEL_NAME,
        progress=PROGRESS_OUTPUT,
        video=VIDEO_OUTPUT,
        metadata=METADATA_OUTPUT,
        frames=FRAMES_OUTPUT,
        max_queue_size=max_queue_size,
        instance_kind=instance_kind,
        inputs=_comma_lines(inputs),
        defaults=_comma_lines(entries),
    )


def lora_listing_config() -> str:
    """config.pbtxt of `i2vgen_xl_loras`, the LoRA listing model."""
    return LORA_LIST_CONFIG.substitute(model_name=LORA_LIST_MODEL, output=LORA_LIST_OUTPUT)


def _comma_lines(lines: list[str]) -> str:
    """Entries of a pbtxt list, one per line: the comma goes before a trailing comment, not after it."""
    out = []
    for i, line in enumerate(lines):
        entry, _, comment = line.partition("  # ")
        comma = "," if i < len(lines) - 1 else ""
        out.append(f"{entry}{comma}  # {comment}" if comment else f"{entry}{comma}")
    return "\n".join(out)


def _pbtxt_text(value) -> str:
    """A default as protobuf text: booleans as true/false, strings escaped."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"')


LORA_LIST_CONFIG = Template("""# The LoRA adapters a request to i2vgen_xl may name (its registry folder, read per call).
# Written by `i2v export`; the code is i2v.serving.lora_listing.
name: "$model_name"
backend: "python"
max_batch_size: 0
output [
  { name: "$output", data_type: TYPE_STRING, dims: [ 1 ] }  # JSON list: name, ranks, layers, target_modules, size
]
instance_group [ { count: 1, kind: KIND_CPU } ]
""")

BLS_CONFIG = Template("""# I2VGen-XL image-to-video: the whole loop (preprocess, encoders, denoising, VAE decode, MP4).
# Decoupled: one response per denoising step carries `$progress` ([step, total]); the last carries
# `$video` (H.264 MP4 bytes), `$metadata` (JSON: parameters used, seed, timings) and, on request, `$frames`.
# Omitted optional inputs take the model's defaults, listed below as parameters `default.<name>`, beside the
# size step that height and width must be multiples of.
# Written by `i2v export` from the parameter table (i2v/params.py).
name: "$model_name"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
# A bounded queue: a request beyond it is refused at once ("Exceeds maximum queue size") instead of waiting
# behind minutes of work. One instance generates one video at a time; raise `count` on bigger machines.
dynamic_batching {
  default_queue_policy { max_queue_size: $max_queue_size, timeout_action: REJECT }
}
input [
$inputs
]
output [
  { name: "$progress", data_type: TYPE_INT32, dims: [ 2 ] },  # [step, total]
  { name: "$video", data_type: TYPE_STRING, dims: [ 1 ] },  # MP4 bytes (H.264, yuv420p, faststart)
  { name: "$metadata", data_type: TYPE_STRING, dims: [ 1 ] },  # JSON
  { name: "$frames", data_type: TYPE_UINT8, dims: [ -1, -1, -1, 3 ] }  # [frames, height, width, RGB]
]
instance_group [ { count: 1, kind: $instance_kind } ]
parameters [
$defaults
]
""")
