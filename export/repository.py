"""Write the Triton model repository: one model per part, the `i2vgen_xl` BLS model and its LoRA listing.

The layout, file by file and per runtime, is model_repository/README.md. Each `1/model.py` is a short module
importing the real model class from the installed `i2v.serving` package, so the Python backend runs the same,
tested code that the package ships. The BLS is the same for every runtime: it calls the parts by name.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from i2v.export.lora_initializers import write_lora_files
from i2v.export.memory_plan import cuda_memory_pool_bytes
from i2v.export.options import DEFAULT_ALLOCATION, DEFAULT_MAX_QUEUE_SIZE
from i2v.export.profiles import DEFAULT_SUPPORTED_SHAPES, OptimizationProfile, config_dims, part_profiles
from i2v.export.sources import model_id, serving_defaults
from i2v.model.info import DEFAULT_RUNTIME, NO_COMPILE, RUNTIMES, ModelInfo, SupportedShapes
from i2v.model.lora import lora_targets
from i2v.model.lora_registry import write_targets
from i2v.model.modules import save_part_weights
from i2v.model.parts import (
    DEFAULT_TORCH_DTYPE,
    RUNTIME_PARAMETER,
    TORCH_COMPILE_PARAMETER,
    TORCH_DTYPE_PARAMETER,
    PartSpec,
    size_multiple,
    specs_for_pipeline,
    vae_scale_factor,
)
from i2v.model.repository_layout import (
    CONFIG_FILE,
    ENGINE_FILE,
    GRAPH_FILE,
    IMAGE_PROCESSOR_FOLDER,
    PART_ARTIFACTS,
    PYTHON_MODEL_FILE,
    SCHEDULER_FOLDER,
    TOKENIZER_FOLDER,
    WEIGHTS_FOLDER,
    pipeline_dir,
    version_dir,
)
from i2v.params import (
    CONFIG_DEFAULT_PREFIX,
    CONFIG_SIZE_STEP,
    FRAMES_OUTPUT,
    IMAGE_INPUT,
    LORA_LIST_MODEL,
    LORA_LIST_OUTPUT,
    METADATA_OUTPUT,
    MODEL_NAME,
    PROGRESS_OUTPUT,
    VIDEO_OUTPUT,
    GenerationParams,
    model_defaults,
    parameters,
    triton_config_type,
)


def _config_type(dtype: str) -> str:
    """A part tensor's numpy dtype ("float16") as `config.pbtxt` names it (TYPE_FP16)."""
    return triton_config_type(np_to_triton_dtype(np.dtype(dtype)))


def model_info_for(
    pipe,
    source: str,
    *,
    runtime: str = DEFAULT_RUNTIME,
    supported_shapes: SupportedShapes | None = None,
    torch_compile: str = NO_COMPILE,
) -> ModelInfo:
    """What the server needs to know of this model; `source` is recorded as a name (`model_id`), never a path."""
    defaults = model_defaults(serving_defaults(source))
    pool = cuda_memory_pool_bytes(
        specs_for_pipeline(pipe), supported_shapes or DEFAULT_SUPPORTED_SHAPES, vae_scale_factor(pipe)
    )
    info = ModelInfo(
        source=model_id(source),
        vae_scale_factor=vae_scale_factor(pipe),
        vae_scaling_factor=float(pipe.vae.config.scaling_factor),
        latent_channels=pipe.unet.config.in_channels,
        size_multiple=size_multiple(pipe),
        text_len=pipe.tokenizer.model_max_length,
        defaults=defaults,
        runtime=runtime,
        torch_compile=torch_compile if runtime == "torch" else NO_COMPILE,
        supported_shapes=supported_shapes,
        cuda_memory_pool_bytes=pool,
        unet_channels=pipe.unet.config.block_out_channels[0],
        unet_heads=pipe.unet.config.block_out_channels[0] // pipe.unet.config.attention_head_dim,
        vae_channels=pipe.vae.config.block_out_channels[0],
    )
    if supported_shapes is not None:
        for height, width in supported_shapes.resolutions:
            if height % info.size_multiple or width % info.size_multiple:
                raise ValueError(f"supported resolution {height}x{width} is not a multiple of {info.size_multiple}")
        try:  # the defaults must be servable, or a request that sets nothing would be refused
            supported_shapes.check(GenerationParams(prompt="-", **defaults))
        except ValueError as exc:
            raise ValueError(
                f"the model's default request ({defaults['height']}x{defaults['width']}, {defaults['num_frames']} "
                f"frames) is outside the engines' shapes, so a request that sets nothing would be refused: {exc}. "
                "Include it (--resolutions, --max-frames)"
            ) from exc
    return info


def write_model_repository(
    pipe,
    onnx_paths: Mapping[str, Path] | None,
    repository: Path,
    *,
    source: str,
    runtime: str = DEFAULT_RUNTIME,
    instance_kind: str | None = None,
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    supported_shapes: SupportedShapes | None = None,
    torch_dtype: str = DEFAULT_TORCH_DTYPE,
    torch_compile: str = NO_COMPILE,
    context_allocation: str = DEFAULT_ALLOCATION,
    tensorrt_lora: bool = False,
) -> Path:
    """Write every model of the repository for `runtime`.

    - onnxruntime: copies `onnx_paths` in, each served by the generic ONNX Runtime runner (Python backend);
    - torch: saves each part's component with `save_pretrained`, served by the generic PyTorch runner in
      `torch_dtype` on a GPU instance (fp32 on a CPU one), the parts the spec marks `compiled` under
      `torch.compile(mode=torch_compile)` unless it is "none"; `onnx_paths` is not used;
    - tensorrt: the engines must already be at `<part>/1/model.plan` (`i2v.export.tensorrt_engines`);
      `supported_shapes` is required, gives each part's optimization profiles and config dims, and goes
      into model_info.json so the BLS refuses other shapes. Triton's TensorRT backend serves the engines; with
      `tensorrt_lora` the UNet's (built refittable) is served by the generic runner instead, which refits it
      per LoRA adapter, its graph (`onnx_paths`) beside it. Without it the UNet takes no LoRA adapters.

    `instance_kind` (KIND_CPU / KIND_GPU) defaults to GPU for tensorrt, CPU for the others; the BLS runs on
    the same kind, so tensors stay on the GPU between the parts when they run there.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "tensorrt" and supported_shapes is None:
        raise ValueError("the tensorrt runtime needs supported_shapes (the table its profiles were built from)")
    if runtime == "onnxruntime" and not onnx_paths:
        raise ValueError("the onnxruntime runtime needs the exported ONNX graphs (onnx_paths)")
    instance_kind = instance_kind or ("KIND_GPU" if runtime == "tensorrt" else "KIND_CPU")
    repository = Path(repository)
    specs = specs_for_pipeline(pipe)
    info = model_info_for(pipe, source, runtime=runtime, supported_shapes=supported_shapes, torch_compile=torch_compile)
    for name, spec in specs.items():
        version = version_dir(repository, name)
        version.mkdir(parents=True, exist_ok=True)
        lora_engine = runtime == "tensorrt" and tensorrt_lora and name == "unet"
        _remove_other_runtimes(version, "tensorrt-lora" if lora_engine else runtime)
        if lora_engine:
            if not (version / ENGINE_FILE).is_file() or not onnx_paths:
                raise FileNotFoundError(f"unet: the LoRA-ready engine needs {version / ENGINE_FILE} and its graph")
            _copy_graph(Path(onnx_paths[name]), version / GRAPH_FILE)  # base weights TensorRT may ask for
            _write_shim(version, "i2v.serving.part_runner", "TensorRT runner for unet (LoRA)")
            config = part_config(spec, "tensorrt", "KIND_GPU")
        elif runtime == "tensorrt":
            if not (version / ENGINE_FILE).is_file():
                raise FileNotFoundError(f"{name}: no TensorRT engine at {version / ENGINE_FILE}; build it first")
            profiles = part_profiles(spec, supported_shapes, info.vae_scale_factor)
            config = tensorrt_part_config(spec, profiles, context_allocation)
        else:
            if runtime == "onnxruntime":
                _copy_graph(Path(onnx_paths[name]), version / GRAPH_FILE)
            else:
                shutil.rmtree(version / WEIGHTS_FOLDER, ignore_errors=True)
                save_part_weights(pipe, name, version / WEIGHTS_FOLDER)
            _write_shim(version, "i2v.serving.part_runner", f"{runtime} runner for {name}")
            compile_mode = info.torch_compile if spec.compiled else NO_COMPILE
            config = part_config(spec, runtime, instance_kind, torch_dtype, compile_mode, default_request_dims(info))
        (version.parent / CONFIG_FILE).write_text(config)
        if name == "unet" and (runtime != "tensorrt" or lora_engine):
            write_lora_targets(pipe, onnx_paths, version, runtime)

    version = write_bls_pipeline(pipe, repository, info=info)
    _write_shim(version, "i2v.serving.bls", "I2VGen-XL BLS: the whole generation loop")
    (version.parent / CONFIG_FILE).write_text(
        bls_config(max_queue_size, instance_kind, info.defaults, size_step=info.size_multiple)
    )
    write_lora_listing(repository)
    return repository


def write_lora_listing(repository: Path) -> None:
    """`i2vgen_xl_loras`: the registered LoRA adapters as JSON (`i2v.serving.lora_listing`), for the UI and CLI."""
    version = version_dir(repository, LORA_LIST_MODEL)
    version.mkdir(parents=True, exist_ok=True)
    _write_shim(version, "i2v.serving.lora_listing", "the LoRA adapters registered with the BLS")
    config = LORA_LIST_CONFIG.substitute(model_name=LORA_LIST_MODEL, output=LORA_LIST_OUTPUT)
    (version.parent / CONFIG_FILE).write_text(config)


def write_lora_targets(pipe, onnx_paths: Mapping[str, Path] | None, version: Path, runtime: str) -> None:
    """What a LoRA may adapt on this UNet (`lora_targets.json`): every linear and convolution layer for the
    torch runtime (PEFT wraps the modules); for a graph, the layers whose weights the graph holds, with their
    base weights beside them for the merge (`i2v.export.lora_initializers`)."""
    if runtime == "torch":
        write_targets(version, lora_targets(pipe.unet))
    elif onnx_paths and "unet" in onnx_paths:
        write_lora_files(Path(onnx_paths["unet"]), pipe.unet, version)


def write_bls_pipeline(
    pipe, repository: Path, *, info: ModelInfo | None = None, source: str = "", runtime: str = DEFAULT_RUNTIME
) -> Path:
    """`<repository>/i2vgen_xl/1/pipeline/`: what the sampling loop reads besides the parts (tokenizer, CLIP
    processor, scheduler, model_info.json). Returns the version folder."""
    info = info or model_info_for(pipe, source, runtime=runtime)
    assets = pipeline_dir(repository)
    assets.mkdir(parents=True, exist_ok=True)
    pipe.tokenizer.save_pretrained(assets / TOKENIZER_FOLDER)
    pipe.feature_extractor.save_pretrained(assets / IMAGE_PROCESSOR_FOLDER)
    pipe.scheduler.save_pretrained(assets / SCHEDULER_FOLDER)
    info.save(assets)
    return assets.parent


def _remove_other_runtimes(version: Path, runtime: str) -> None:
    """A repository exported again with another runtime must not keep the old one's files (a stale
    model.onnx next to a new model.plan would only confuse; stale weights waste gigabytes)."""
    keep = set(PART_ARTIFACTS[runtime])
    for artifacts in PART_ARTIFACTS.values():
        for artifact in set(artifacts) - keep:
            path = version / artifact
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            if artifact == GRAPH_FILE:
                for data in version.glob("*.onnx.data"):
                    data.unlink()


def _copy_graph(source: Path, target: Path) -> None:
    """Copy a graph, and its external weights when it has them (`<name>.onnx.data`, export_part's naming).

    The graph refers to its weights by file name, relative to itself, so they keep their name beside the
    renamed graph (the full-size UNet: model.onnx + unet.onnx.data).
    """
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    data = source.with_name(source.name + ".data")
    if data.exists() and data.resolve() != (target.parent / data.name).resolve():
        shutil.copyfile(data, target.parent / data.name)


def _write_shim(version: Path, module: str, what: str) -> None:
    """A model's model.py. The Python backend's stub puts its working directory first on sys.path, and the Triton
    image's is /opt/i2v, the sources the package was installed from: their `i2v/` folder (the core only) would
    hide the installed package, so the shim takes that entry out before importing it."""
    (version / PYTHON_MODEL_FILE).write_text(
        f'"""{what} (written by `i2v export`; the code is `{module}`)."""\n\n'
        "import sys\n\n"
        "# the stub's working directory: sources there would hide the installed i2v package\n"
        'sys.path[:] = [path for path in sys.path if path not in ("", ".")]\n\n'
        f"from {module} import TritonPythonModel  # noqa: E402, F401\n"
    )


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
    factor = info.vae_scale_factor
    return {
        "batch": params.batch,
        "frames": params.num_frames,
        "height": params.height,
        "width": params.width,
        "latent_height": params.height // factor,
        "latent_width": params.width // factor,
    }


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
    inputs = [f'  {{ name: "{IMAGE_INPUT}", data_type: TYPE_STRING, dims: [ 1 ] }}  # encoded PNG / JPEG / WebP bytes']
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
