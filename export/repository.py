"""Write the Triton model repository: one model per part, the `i2vgen_xl` BLS model and its LoRA listing.

The layout, file by file and per runtime, is model_repository/README.md. Each `1/model.py` is a short module
importing the real model class from the installed `i2v.serving` package, so the Python backend runs the same,
tested code that the package ships. The BLS is the same for every runtime: it calls the parts by name.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from i2v.export.lora_initializers import write_lora_files
from i2v.export.memory_plan import cuda_memory_pool_bytes
from i2v.export.options import DEFAULT_ALLOCATION, DEFAULT_MAX_QUEUE_SIZE
from i2v.export.profiles import DEFAULT_SUPPORTED_SHAPES, part_profiles
from i2v.export.sources import model_id, serving_defaults
from i2v.export.triton_configs import (
    bls_config,
    default_request_dims,
    lora_listing_config,
    part_config,
    tensorrt_part_config,
)
from i2v.model.info import DEFAULT_RUNTIME, NO_COMPILE, RUNTIMES, ModelInfo, SupportedShapes
from i2v.model.lora import lora_targets
from i2v.model.lora_layer_map import write_targets
from i2v.model.modules import save_part_weights
from i2v.model.parts import (
    DEFAULT_TORCH_DTYPE,
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
    LORA_LIST_MODEL,
    GenerationParams,
    model_defaults,
)


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
    (version.parent / CONFIG_FILE).write_text(lora_listing_config())


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
