"""The tensorrt runtime: repository layout and configs (everywhere), engine build and comparison (GPU + TensorRT)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from model_configs import read_config
from tritonclient.grpc import model_config_pb2

from i2v.export.profiles import TINY_SUPPORTED_SHAPES, config_dims, part_profiles
from i2v.export.tensorrt_engines import tensorrt_version
from i2v.model.info import ModelInfo, SupportedShapes
from i2v.model.parts import PART_NAMES, specs_for_pipeline

TENSORRT = tensorrt_version()
MISSING = [
    what
    for what, present in (
        (
            "the tensorrt package (NVIDIA's TensorRT/Triton container, or `pip install tensorrt "
            "--extra-index-url https://pypi.nvidia.com`; docs/tensorrt.md)",
            TENSORRT is not None,
        ),
        ("a CUDA GPU", torch.cuda.is_available()),
    )
    if not present
]
needs_engines = pytest.mark.skipif(bool(MISSING), reason="needs " + " and ".join(MISSING))


@pytest.mark.skipif(TENSORRT is not None, reason="TensorRT is installed here: the missing-TensorRT path cannot run")
def test_tensorrt_export_without_tensorrt_fails_fast_saying_how_to_get_it(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "i2v.cli", "export", "--runtime", "tensorrt", "--output", str(tmp_path / "repo")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "TensorRT is not installed" in run.stderr
    assert "pypi.nvidia.com" in run.stderr and "docs/tensorrt.md" in run.stderr
    assert "ONNX export" not in run.stderr  # refused before minutes of export, not after
    assert not (tmp_path / "repo").exists()


def test_tensorrt_repository_has_plan_configs_matching_the_profiles(tiny_pipeline, tmp_path):
    """What a TensorRT export writes around its engines (dummy plans here: no TensorRT needed)."""
    from i2v.export.repository import write_model_repository

    repository = tmp_path / "repository"
    for name in PART_NAMES:
        version = repository / name / "1"
        version.mkdir(parents=True)
        (version / "model.plan").write_bytes(b"engine")
        (version / "model.onnx").write_bytes(b"stale graph from an onnxruntime export")
        (version / "model.py").write_text("stale runner")
    write_model_repository(
        tiny_pipeline, None, repository, source="tiny", runtime="tensorrt", supported_shapes=TINY_SUPPORTED_SHAPES
    )
    specs = specs_for_pipeline(tiny_pipeline)
    for name in PART_NAMES:
        config = read_config(repository / name / "config.pbtxt")
        assert config.platform == "tensorrt_plan" and not config.backend
        profiles = part_profiles(specs[name], TINY_SUPPORTED_SHAPES, 8)
        for declared, tensor in zip(config.input, specs[name].inputs, strict=True):
            assert list(declared.dims) == config_dims(tensor, profiles)
        assert list(config.instance_group[0].profile) == [str(i) for i in range(len(profiles))]
        assert sorted(p.name for p in (repository / name / "1").iterdir()) == ["model.plan"]
    unet = read_config(repository / "unet" / "config.pbtxt")
    assert len(unet.instance_group[0].profile) == len(TINY_SUPPORTED_SHAPES.resolutions)
    bls = read_config(repository / "i2vgen_xl" / "config.pbtxt")
    assert bls.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU  # tensors stay on the GPU
    info = ModelInfo.load(repository / "i2vgen_xl" / "1" / "pipeline")
    assert info.runtime == "tensorrt" and info.supported_shapes == TINY_SUPPORTED_SHAPES


def test_a_lora_ready_tensorrt_unet_is_served_by_the_part_runner_beside_its_graph(tiny_pipeline, onnx_paths, tmp_path):
    """`--tensorrt-lora`: the UNet's engine in the generic runner (which refits it per adapter), its graph and
    LoRA map beside it; the other engines stay with Triton's backend. Exported again without it, the UNet goes
    back to Triton's backend and takes no LoRA (the BLS refuses one)."""
    from i2v.export.repository import write_model_repository
    from i2v.model.lora_layer_map import takes_lora
    from i2v.model.repository_layout import LORA_BASE_FILE, LORA_TARGETS_FILE

    for name in PART_NAMES:
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.plan").write_bytes(b"engine")
    export = dict(source="tiny", runtime="tensorrt", supported_shapes=TINY_SUPPORTED_SHAPES)
    write_model_repository(tiny_pipeline, onnx_paths, tmp_path, tensorrt_lora=True, **export)
    unet = read_config(tmp_path / "unet" / "config.pbtxt")
    assert (unet.backend, unet.platform) == ("python", "")
    assert unet.parameters["RUNTIME"].string_value == "tensorrt"
    assert unet.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"
    assert unet.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    files = {p.name for p in (tmp_path / "unet" / "1").iterdir()}
    assert {"model.py", "model.plan", "model.onnx", LORA_TARGETS_FILE, LORA_BASE_FILE} <= files
    assert takes_lora(tmp_path)
    assert read_config(tmp_path / "vae_decoder" / "config.pbtxt").platform == "tensorrt_plan"

    write_model_repository(tiny_pipeline, onnx_paths, tmp_path, **export)
    assert read_config(tmp_path / "unet" / "config.pbtxt").platform == "tensorrt_plan"
    assert sorted(p.name for p in (tmp_path / "unet" / "1").iterdir()) == ["model.plan"]
    assert not takes_lora(tmp_path)


def test_tensorrt_repository_needs_engines_and_a_shape_table_covering_the_defaults(tiny_pipeline, tmp_path):
    from i2v.export.repository import write_model_repository

    with pytest.raises(ValueError, match="needs supported_shapes"):
        write_model_repository(tiny_pipeline, None, tmp_path, source="tiny", runtime="tensorrt")
    with pytest.raises(FileNotFoundError, match="no TensorRT engine"):
        write_model_repository(
            tiny_pipeline, None, tmp_path, source="tiny", runtime="tensorrt", supported_shapes=TINY_SUPPORTED_SHAPES
        )
    without_default = SupportedShapes(resolutions=((64, 64),))  # the tiny model's default is 64x96
    with pytest.raises(ValueError, match="default request .* is outside the engines' shapes"):
        write_model_repository(
            tiny_pipeline, None, tmp_path, source="tiny", runtime="tensorrt", supported_shapes=without_default
        )


def test_the_engine_check_holds_an_engines_outputs_to_the_fp32_part_with_polygraphys_comparator(tiny_pipeline):
    """What the export's engine check does once TensorRT has run, on the real polygraphy: the tiny UNet's fp32
    outputs are the reference, and an engine run that returns them within the fp16 tolerance passes; one element
    off by more, or one NaN, fails."""
    import numpy as np
    from polygraphy.comparator import RunResults

    from i2v.export.sample_inputs import part_inputs
    from i2v.export.tensorrt_engines import check_engine_outputs, reference_outputs
    from i2v.model.modules import part_module
    from i2v.model.parts import SIZE_FREE_SPECS

    feed = part_inputs(tiny_pipeline, "unet", batch=2, height=64, width=64, frames=8)
    reference = reference_outputs("unet", part_module(tiny_pipeline, "unet"), feed)
    ((output, expected),) = reference.items()
    assert output == SIZE_FREE_SPECS["unet"].output_names[0] and expected.shape == feed["sample"].shape
    atol, rtol = SIZE_FREE_SPECS["unet"].fp16_tolerance

    def engine_run(value: np.ndarray):
        results = RunResults()
        results.add([{output: value}], runner_name="unet-tensorrt")
        return check_engine_outputs("unet", 1, results, reference)

    within = engine_run(expected + 0.9 * atol)
    assert within.passed and within.profile == 1 and str(list(expected.shape)) in within.detail
    beyond = expected.copy()
    beyond.flat[7] += 1.5 * (atol + rtol * abs(beyond.flat[7]))
    assert not engine_run(beyond).passed
    with_nan = expected.copy()
    with_nan.flat[0] = np.nan
    failed = engine_run(with_nan)
    assert not failed.passed and "NaN or infinity" in failed.detail


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_engines
def test_tiny_engines_build_with_a_timing_cache_and_match_their_fp32_torch_parts(tiny_pipeline, onnx_paths, tmp_path):
    from i2v.export.pipeline import build_tensorrt_engines
    from i2v.export.repository import write_model_repository

    repository, cache = tmp_path / "repository", tmp_path / "timing.cache"
    plans = build_tensorrt_engines(
        tiny_pipeline,
        onnx_paths,
        repository,
        TINY_SUPPORTED_SHAPES,
        timing_cache=cache,
        engine_check="all",
        progress=False,
    )
    assert all(plans[name].stat().st_size > 0 for name in PART_NAMES)
    assert cache.stat().st_size > 0
    write_model_repository(
        tiny_pipeline, onnx_paths, repository, source="tiny", runtime="tensorrt", supported_shapes=TINY_SUPPORTED_SHAPES
    )
    assert read_config(repository / "unet" / "config.pbtxt").platform == "tensorrt_plan"


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_engines
def test_engine_refuses_a_shape_outside_its_profiles(tiny_pipeline, onnx_paths, tmp_path):
    """What the BLS's shape check protects against: the engine itself cannot run other sizes."""
    import numpy as np
    from polygraphy.backend.trt import TrtRunner, engine_from_bytes

    from i2v.export.sample_inputs import part_inputs
    from i2v.export.tensorrt_engines import build_engine

    specs = specs_for_pipeline(tiny_pipeline)
    profiles = part_profiles(specs["vae_decoder"], TINY_SUPPORTED_SHAPES, 8)
    plan = build_engine(onnx_paths["vae_decoder"], tmp_path / "model.plan", profiles)
    feed = part_inputs(tiny_pipeline, "vae_decoder", batch=1, height=96, width=96, frames=1)
    with TrtRunner(engine_from_bytes(plan.read_bytes())) as runner, pytest.raises(Exception):  # noqa: B017
        runner.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})


def test_on_profile_change_allocation_is_written_for_newer_tritons(tiny_pipeline, tmp_path):
    from i2v.export.repository import write_model_repository

    for name in PART_NAMES:
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.plan").write_bytes(b"engine")
    write_model_repository(
        tiny_pipeline,
        None,
        tmp_path,
        source="tiny",
        runtime="tensorrt",
        supported_shapes=TINY_SUPPORTED_SHAPES,
        context_allocation="on-profile-change",
    )
    config = read_config(tmp_path / "unet" / "config.pbtxt")
    assert config.parameters["execution_context_allocation_strategy"].string_value == "ON_PROFILE_CHANGE"


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_engines
def test_engine_memory_is_read_per_profile_and_planned(tiny_pipeline, onnx_paths, tmp_path):
    from i2v.export.memory_plan import plan
    from i2v.export.tensorrt_engines import build_engine, engine_memory

    profiles = part_profiles(specs_for_pipeline(tiny_pipeline)["unet"], TINY_SUPPORTED_SHAPES, 8)
    path = build_engine(onnx_paths["unet"], tmp_path / "model.plan", profiles)
    memory = engine_memory(path, "unet", contexts=len(profiles))
    assert len(memory.profile_bytes) == len(profiles) and all(b > 0 for b in memory.profile_bytes)
    assert memory.weights_bytes == path.stat().st_size
    assert plan([memory]).held_bytes == memory.weights_bytes + len(profiles) * max(memory.profile_bytes)


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_engines
def test_tensorrt_video_matches_the_diffusers_fp32_pipeline_frame_by_frame(tiny_pipeline, onnx_paths, photo, tmp_path):
    """The whole loop over fp16 engines against diffusers' fp32 I2VGenXLPipeline, same seed: PSNR per frame."""
    from diffusers_reference import MIN_FP16_PSNR_DB, NEGATIVE, PROMPT, diffusers_frames
    from tensorrt_parts import TensorRTParts

    from i2v.benchmarks.measure import frame_psnr
    from i2v.export.pipeline import build_tensorrt_engines
    from i2v.export.repository import write_model_repository
    from i2v.params import GenerationParams
    from i2v.serving.generator import VideoGenerator

    repository = tmp_path / "repository"
    build_tensorrt_engines(tiny_pipeline, onnx_paths, repository, TINY_SUPPORTED_SHAPES, progress=False)
    write_model_repository(
        tiny_pipeline, onnx_paths, repository, source="tiny", runtime="tensorrt", supported_shapes=TINY_SUPPORTED_SHAPES
    )
    parts = TensorRTParts(repository, tiny_pipeline)
    try:
        generator = VideoGenerator(repository / "i2vgen_xl" / "1" / "pipeline", parts, "cuda")
        params = dict(height=64, width=96, num_frames=16, num_inference_steps=10, guidance_scale=9.0, fps=16, seed=3)
        got = generator(photo, GenerationParams(prompt=PROMPT, negative_prompt=NEGATIVE, **params)).frames
    finally:
        parts.close()
    expected = diffusers_frames(
        tiny_pipeline, photo, height=64, width=96, num_frames=16, steps=10, guidance=9.0, fps=16, seed=3
    )
    psnr = frame_psnr(got, expected)
    assert min(psnr) >= MIN_FP16_PSNR_DB, f"PSNR per frame {psnr}"


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_engines
def test_a_refitted_engine_runs_the_adapter_as_onnxruntime_runs_it_merged(tiny_pipeline, onnx_paths, tmp_path):
    """The UNet engine built refittable, refitted with a LoRA merged at 0.8 (by ONNX initializer name) and back to
    the base weights: each time within the fp16 tolerance of ONNX Runtime with the same initializers."""
    import numpy as np
    from lora_files import MadeLora
    from onnxruntime import OrtValue
    from polygraphy.backend.trt import TrtRunner, engine_from_bytes

    from i2v.export.lora_initializers import write_lora_files
    from i2v.export.sample_inputs import part_inputs
    from i2v.export.tensorrt_engines import build_engine
    from i2v.model.lora import read_lora
    from i2v.model.parts import SIZE_FREE_SPECS
    from i2v.serving.lora_runtime import MergedWeights
    from i2v.serving.onnxruntime_session import open_session
    from i2v.serving.tensorrt_part import refit_engine

    profiles = part_profiles(specs_for_pipeline(tiny_pipeline)["unet"], TINY_SUPPORTED_SHAPES, 8)
    plan = build_engine(onnx_paths["unet"], tmp_path / "model.plan", profiles, refittable=True)
    write_lora_files(onnx_paths["unet"], tiny_pipeline.unet, tmp_path)
    lora = MadeLora(tiny_pipeline.unet, tmp_path / "a.safetensors", seed=1)
    weights = MergedWeights(tmp_path)
    merged = weights.merged(read_lora(lora.path), 0.8)
    feed = {
        k: np.ascontiguousarray(v)
        for k, v in part_inputs(tiny_pipeline, "unet", batch=2, height=64, width=64, frames=8).items()
    }
    atol, rtol = SIZE_FREE_SPECS["unet"].fp16_tolerance
    engine = engine_from_bytes(plan.read_bytes())
    for update in (merged, weights.base(merged.keys())):
        refit_engine(engine, update, onnx_paths["unet"])
        values = {name: OrtValue.ortvalue_from_numpy(array) for name, array in update.items()}
        expected = open_session(onnx_paths["unet"], values).run(None, feed)[0]
        with TrtRunner(engine) as runner:
            got = next(iter(runner.infer(feed).values()))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got.astype(np.float32), expected, atol=atol, rtol=rtol)
