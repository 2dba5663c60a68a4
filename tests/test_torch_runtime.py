"""The `torch` runtime: the diffusers modules themselves behind the same BLS and client.

Here it runs on the CPU in fp32 through the real embedded server and must give diffusers' video; on a GPU
host the same runner serves fp16 with SDPA (the `gpu` test below).
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from diffusers_reference import MIN_FP16_PSNR_DB, NEGATIVE, PROMPT, diffusers_frames
from model_configs import read_config
from tritonclient.grpc import model_config_pb2

from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest
from i2v.model.info import ModelInfo
from i2v.model.parts import PART_NAMES, specs_for_pipeline


@pytest.fixture(scope="module")
def torch_repository(torch_triton):
    return torch_triton.model_repository


def test_torch_repository_holds_weights_and_the_torch_runner(torch_repository, tiny_pipeline):
    specs = specs_for_pipeline(tiny_pipeline)
    for name in PART_NAMES:
        config = read_config(torch_repository / name / "config.pbtxt")
        assert config.backend == "python"
        assert [t.name for t in config.input] == [t.name for t in specs[name].inputs]
        assert config.parameters["RUNTIME"].string_value == "torch"
        assert config.parameters["TORCH_DTYPE"].string_value == "float16"
        version = torch_repository / name / "1"
        assert "i2v.serving.part_runner" in (version / "model.py").read_text()
        assert list((version / "weights").glob("*.safetensors")) and (version / "weights" / "config.json").exists()
        assert not (version / "model.onnx").exists()
    info = ModelInfo.load(torch_repository / "i2vgen_xl" / "1" / "pipeline")
    assert info.runtime == "torch" and info.supported_shapes is None


def test_torch_runtime_video_equals_diffusers_pipeline(torch_triton, tiny_pipeline, photo, photo_png):
    height, width, frames, steps, guidance, fps, seed = 64, 96, 8, 10, 7.5, 8, 1234
    with I2VClient(torch_triton.endpoints.grpc_url) as client:
        result = client.generate(
            GenerationRequest(
                image=photo_png,
                prompt=PROMPT,
                negative_prompt=NEGATIVE,
                height=height,
                width=width,
                num_frames=frames,
                num_inference_steps=steps,
                guidance_scale=guidance,
                fps=fps,
                seed=seed,
                return_frames=True,
            )
        )
    expected = diffusers_frames(
        tiny_pipeline,
        photo,
        height=height,
        width=width,
        num_frames=frames,
        steps=steps,
        guidance=guidance,
        fps=fps,
        seed=seed,
    )
    assert result.frames.shape == expected.shape == (frames, height, width, 3)
    difference = np.abs(result.frames.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1, f"max difference {difference.max()} levels"
    assert (difference > 0).mean() < 0.01
    assert result.metadata["seed"] == seed
    # the model is named, not located: a server does not tell clients where its weights are
    assert result.metadata["model"] == "i2vgen-xl-tiny"


def test_export_torch_runtime_writes_no_onnx_and_replaces_another_runtime(tiny_dir, tmp_path):
    """`i2v export --runtime torch` over a repository of another runtime leaves no stale graphs behind."""
    from i2v.export.pipeline import export_model_repository

    repository = tmp_path / "repository"
    for name in PART_NAMES:  # what an onnxruntime export left there
        version = repository / name / "1"
        version.mkdir(parents=True)
        (version / "model.onnx").write_bytes(b"old graph")
        (version / "model.onnx.data").write_bytes(b"old weights")
    export_model_repository(str(tiny_dir), repository, runtime="torch", device="cpu", progress=False)
    for name in PART_NAMES:
        version = repository / name / "1"
        assert sorted(p.name for p in version.iterdir()) == (["lora_targets.json"] if name == "unet" else []) + [
            "model.py",
            "weights",
        ]
        kind = read_config(repository / name / "config.pbtxt").instance_group[0].kind
        assert kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    info = json.loads((repository / "i2vgen_xl" / "1" / "pipeline" / "model_info.json").read_text())
    assert info["runtime"] == "torch"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the fp16 + SDPA path of the runner)")
def test_torch_parts_run_fp16_on_cuda_close_to_fp32(torch_repository, tiny_pipeline):
    from i2v.export.sample_inputs import part_inputs
    from i2v.model.modules import load_part_module, run_part_module

    tolerances = {"text_encoder": 5e-2, "image_encoder": 2e-2, "vae_encoder": 2e-2, "unet": 2e-2, "vae_decoder": 2e-2}
    for name in PART_NAMES:
        weights = torch_repository / name / "1" / "weights"
        reference = load_part_module(name, weights, "cpu", torch.float32)
        fast = load_part_module(name, weights, "cuda", torch.float16)
        inputs = [
            torch.from_numpy(a)
            for a in part_inputs(tiny_pipeline, name, batch=2, height=64, width=64, frames=8).values()
        ]
        expected = run_part_module(reference, inputs, torch.float32)
        got = run_part_module(fast, inputs, torch.float16)
        for e, g in zip(expected, got, strict=True):
            assert g.is_cuda and g.dtype == torch.float32
            error = (g.cpu() - e).abs().max().item()
            assert error <= tolerances[name] * max(1.0, e.abs().max().item()), f"{name}: {error}"


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
        ),
    ],
)
def test_fp16_loop_stays_within_psnr_of_the_diffusers_fp32_pipeline(torch_repository, tiny_pipeline, photo, device):
    """The whole loop over the fp16 part modules, as a GPU instance runs them (timestep, fps and embeddings cast
    by the same code), against diffusers' fp32 pipeline on the same seed: every frame within MIN_FP16_PSNR_DB."""
    from i2v.benchmarks.measure import frame_psnr
    from i2v.benchmarks.runners import TorchParts
    from i2v.params import GenerationParams
    from i2v.serving.generator import VideoGenerator

    shape = dict(height=64, width=96, num_frames=16, fps=8, seed=3)
    generator = VideoGenerator(
        torch_repository / "i2vgen_xl" / "1" / "pipeline",
        TorchParts(copy.deepcopy(tiny_pipeline), torch.device(device), torch.float16),
        torch.device(device),
    )
    params = GenerationParams(
        prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=10, guidance_scale=7.5, **shape
    )
    got = generator(photo, params).frames
    expected = diffusers_frames(tiny_pipeline, photo, steps=10, guidance=7.5, **shape)
    psnr = frame_psnr(got, expected)
    assert min(psnr) >= MIN_FP16_PSNR_DB, f"PSNR per frame {[round(p, 1) for p in psnr]}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")
@pytest.mark.parametrize("capacity", [8, 1])
def test_cuda_graphs_replay_the_eager_unet_at_each_shape(tiny_pipeline, capacity):
    """One graph per input shapes, shapes alternating as requests of two sizes would, new inputs each call:
    every replay gives the eager module's output, and a returned output is not overwritten by the next call;
    with room for one graph, each size change captures anew (the other graph given up) with the same results."""
    from i2v.export.sample_inputs import part_inputs
    from i2v.model.modules import CudaGraphs, part_module, run_part_module

    eager = copy.deepcopy(part_module(tiny_pipeline, "unet")).to("cuda", torch.float16)
    graphed = CudaGraphs(eager, capacity=capacity)
    sizes = [(64, 64, 8), (64, 96, 16), (64, 64, 8), (64, 96, 16), (64, 64, 8)]
    kept = []
    for call, (height, width, frames) in enumerate(sizes):
        inputs = part_inputs(tiny_pipeline, "unet", batch=2, height=height, width=width, frames=frames)
        feeds = [torch.from_numpy(a) for a in inputs.values()]
        feeds[0] = feeds[0] + call  # another latent every call
        (expected,) = run_part_module(eager, feeds, torch.float16)
        (got,) = run_part_module(graphed, feeds, torch.float16)
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)
        kept.append((got, got.clone()))
    assert len(graphed.graphs) == min(2, capacity)
    for got, snapshot in kept:
        assert torch.equal(got, snapshot), "a later replay overwrote an earlier call's output"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")
def test_cuda_graphs_give_back_what_each_captures_warm_up_took(tiny_pipeline):
    """A capture's eager warm-up calls run on a side stream: what they left in PyTorch's cache could serve no
    later call and counted as used to the server's memory check, and a new stream per capture held one more
    cuBLAS workspace each time (32 MiB on a Hopper GPU; this test found 76 MiB over three captures on an H100).
    After a capture at a large shape, captures at three smaller ones reuse the graphs' pool and keep PyTorch's
    reserved memory where the first left it (each smaller warm-up alone takes tens of MB here)."""
    from i2v.export.sample_inputs import part_inputs
    from i2v.model.modules import CudaGraphs, part_module, run_part_module

    graphed = CudaGraphs(copy.deepcopy(part_module(tiny_pipeline, "unet")).to("cuda", torch.float16))

    def call(height: int, width: int, frames: int) -> None:
        inputs = part_inputs(tiny_pipeline, "unet", batch=2, height=height, width=width, frames=frames)
        run_part_module(graphed, [torch.from_numpy(a) for a in inputs.values()], torch.float16)
        torch.cuda.synchronize()

    call(1024, 1024, 32)
    reserved = torch.cuda.memory_reserved()
    segments = {segment["address"] for segment in torch.cuda.memory_snapshot()}
    for size in [(768, 768, 16), (512, 1024, 16), (1024, 512, 16)]:
        call(*size)
    grown = torch.cuda.memory_reserved() - reserved
    added = [  # what held the growth, should it fail again: each new segment's stream, size and pool
        (segment["stream"], segment["total_size"] >> 20, segment.get("segment_pool_id"))
        for segment in torch.cuda.memory_snapshot()
        if segment["address"] not in segments
    ]
    assert grown < 40 * 2**20, f"reserved memory grew by {grown / 2**20:.0f} MiB; new (stream, MiB, pool): {added}"
    assert len(graphed.graphs) == 4


def test_compiled_unet_repository_compiles_at_load_with_a_warmup_at_the_default_shapes(tiny_pipeline, tmp_path):
    from i2v.export.repository import write_model_repository

    repository = write_model_repository(
        tiny_pipeline, None, tmp_path, source="tiny", runtime="torch", torch_compile="reduce-overhead"
    )
    for name in PART_NAMES:
        config = read_config(repository / name / "config.pbtxt")
        mode = config.parameters["TORCH_COMPILE"].string_value
        assert mode == ("reduce-overhead" if name == "unet" else "none")
        assert len(config.model_warmup) == (1 if name == "unet" else 0)
    warmup = read_config(repository / "unet" / "config.pbtxt").model_warmup[0]
    sample = warmup.inputs["sample"]
    assert list(sample.dims) == [2, 4, 16, 8, 12] and sample.random_data  # the tiny model's default request
    assert list(warmup.inputs["timestep"].dims) == [1]


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> dict[str, str]:
    """The compiled servers' TorchInductor cache: a folder of this module's own, empty at first."""
    return {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path_factory.mktemp("torch-compile-cache"))}


@pytest.fixture(scope="module")
def compiled_triton(serve_tiny, compile_cache):
    # TorchInductor compiles the UNet during the warm-up request: minutes on two CPU cores
    options = {"startup_timeout_s": 600, "env": compile_cache}
    with serve_tiny("compiled", options, runtime="torch", torch_compile="default") as server:
        yield server


def test_served_compiled_unet_gives_the_eager_video(compiled_triton, torch_triton, photo_png):
    """torch.compile (TorchInductor, fp32 on the CPU) against the eager torch runtime: the same frames. The
    compilation happened while the model loaded (Triton's warm-up request), before any client asked."""
    assert "unet: compiled (default)" in compiled_triton.log_tail(400)
    request = GenerationRequest(
        image=photo_png,
        prompt=PROMPT,
        height=64,
        width=96,
        num_inference_steps=10,
        num_frames=16,
        seed=7,
        return_frames=True,
    )
    with I2VClient(compiled_triton.endpoints.grpc_url) as compiled, I2VClient(torch_triton.endpoints.grpc_url) as eager:
        got, expected = compiled.generate(request).frames, eager.generate(request).frames
    difference = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert got.shape == (16, 64, 96, 3) and difference.max() <= 1


def test_a_restarted_compiled_server_loads_the_unet_from_the_compile_cache(
    compiled_triton, compile_cache, photo_png, tmp_path
):
    """The first server compiled the UNet into the compile cache; a server started again on the same repository
    and cache (a restart, another replica) loads the compiled graphs from there, compiles none, and gives the
    same video."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    compiled = (
        r"unet: compiled \(default\) for the warm-up shapes in [\d.]+ s; "
        r"compile cache (\S+): (\d+) of (\d+) graphs from it"
    )
    first = re.search(compiled, compiled_triton.log_tail(400))
    assert first and first[1] == compile_cache["TORCHINDUCTOR_CACHE_DIR"] and first[2] == "0" and int(first[3]) > 0
    shape = dict(height=64, width=96, num_frames=16, num_inference_steps=10)  # the warm-up shapes: no recompiling
    request = GenerationRequest(image=photo_png, prompt=PROMPT, seed=2, return_frames=True, **shape)
    server = EmbeddedTritonServer(
        compiled_triton.model_repository, log_file=tmp_path / "server.log", startup_timeout_s=600, env=compile_cache
    )
    with server:
        again = re.search(compiled, server.log_tail(400))
        assert again and again[2] == again[3] != "0", server.log_tail(20)
        with I2VClient(server.endpoints.grpc_url) as restarted, I2VClient(compiled_triton.endpoints.grpc_url) as before:
            assert np.array_equal(restarted.generate(request).frames, before.generate(request).frames)
