"""The served GPU path: the embedded tritonserver is a GPU build, so on a CUDA host it serves KIND_GPU Python
models. These tests skip where there is no CUDA, and run wherever a GPU is (`make gpu-proof`); one test runs
on a CPU-only host instead: a GPU repository there is refused, never served on the CPU.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest

HERE = Path(__file__).resolve().parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROMPT = "a lighthouse"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the no-GPU refusal cannot happen")
def test_a_gpu_repository_on_a_host_without_gpu_is_refused_not_run_on_the_cpu(tiny_pipeline, tmp_path):
    from i2v.export.repository import write_model_repository
    from i2v.serving.triton_server import EmbeddedTritonServer, TritonServerError

    repository = write_model_repository(
        tiny_pipeline, None, tmp_path / "repository", source="tiny", runtime="torch", instance_kind="KIND_GPU"
    )
    with pytest.raises(TritonServerError, match="has kind KIND_GPU but no GPUs are available"):
        EmbeddedTritonServer(repository, log_file=tmp_path / "server.log").start()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA works here: the driver-mismatch message cannot show")
def test_a_gpu_instance_where_torch_has_no_cuda_fails_naming_the_cause(monkeypatch):
    """Where Triton sees a GPU but PyTorch cannot use it (a driver older than torch's CUDA build). Imported
    with Triton's own triton_python_backend_utils on the path, as the Python backend imports it."""
    import pytriton

    monkeypatch.syspath_prepend(str(Path(pytriton.__file__).parent / "tritonserver" / "backends" / "python"))
    from i2v.serving.tensors import CudaUnavailableError, instance_device

    with pytest.raises(CudaUnavailableError, match=r"unet: the instance is KIND_GPU, but PyTorch .* cannot use CUDA"):
        instance_device({"model_instance_kind": "GPU", "model_instance_device_id": "0", "model_name": "unet"})
    assert (
        instance_device({"model_instance_kind": "CPU", "model_instance_device_id": "0", "model_name": "unet"}).type
        == "cpu"
    )


@pytest.mark.gpu
@needs_cuda
def test_a_gpu_instance_given_a_foreign_cudnn_fails_at_load_naming_it():
    """The H100 image keeps a cuDNN 9.14 in /usr/lib/x86_64-linux-gnu beside torch's own 9.19: a stub with that
    folder early on LD_LIBRARY_PATH (as the launcher once put it) loaded it and ran the UNet on it, unasked.
    The instance now refuses to load, naming the folder's variable. Skips where no other cuDNN is found, or
    where the one found is torch's own version."""
    import os
    import subprocess
    import sys
    import sysconfig
    from importlib.util import find_spec

    folders = [sysconfig.get_config_var("LIBDIR"), "/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64"]
    found = [f for f in dict.fromkeys(folders) if f and any(Path(f).glob("libcudnn.so.9*"))]
    if not found:
        pytest.skip("no cuDNN outside torch's own here: no foreign one to load")
    # found, not imported: importing pytriton imports its client, which needs gevent
    backend = Path(find_spec("pytriton").submodule_search_locations[0]) / "tritonserver" / "backends" / "python"
    code = (
        f"import sys; sys.path.insert(0, {str(backend)!r}); from i2v.serving.tensors import instance_device; "
        "instance_device({'model_instance_kind': 'GPU', 'model_instance_device_id': '0', 'model_name': 'unet'})"
    )
    env = {**os.environ, "LD_LIBRARY_PATH": found[0]}
    run = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if run.returncode == 0:
        pytest.skip(f"the cuDNN in {found[0]} is the version torch was built with: no mismatch to show")
    assert "unet: PyTorch" in run.stderr and "loaded a cuDNN it cannot use" in run.stderr, run.stderr[-2000:]
    assert f"LD_LIBRARY_PATH='{found[0]}'" in run.stderr


@pytest.fixture(scope="module", params=["none", "cuda-graphs"])
def gpu_triton(serve_tiny, request):
    name = f"gpu-repository-{request.param}"
    with serve_tiny(name, runtime="torch", instance_kind="KIND_GPU", torch_compile=request.param) as server:
        yield server


@pytest.mark.gpu
@needs_cuda
def test_served_gpu_torch_runtime_gives_the_in_process_video(gpu_triton, tiny_pipeline, photo, photo_png):
    """KIND_GPU BLS and parts in fp16, tensors kept on the GPU between them, against the same loop in this
    process over the same fp16 modules (eager): served eager, and served with the UNet in CUDA graphs."""
    from diffusers_reference import MIN_FP16_PSNR_DB, NEGATIVE, diffusers_frames

    from i2v.benchmarks.measure import frame_psnr
    from i2v.benchmarks.runners import TorchParts
    from i2v.params import GenerationParams
    from i2v.serving.generator import VideoGenerator

    shape = dict(height=64, width=96, num_frames=16, fps=8, seed=5)
    params = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=10, guidance_scale=7.5, **shape)
    with I2VClient(gpu_triton.endpoints.grpc_url) as client:
        served = client.generate(GenerationRequest(image=photo_png, return_frames=True, **params))
    device = torch.device("cuda")
    generator = VideoGenerator(
        gpu_triton.model_repository / "i2vgen_xl" / "1" / "pipeline",
        TorchParts(copy.deepcopy(tiny_pipeline), device, torch.float16),  # it moves the modules it is given
        device,
    )
    expected = generator(photo, GenerationParams(**params)).frames
    difference = np.abs(served.frames.astype(np.int16) - expected.astype(np.int16))
    assert served.frames.shape == expected.shape and difference.max() <= 2, difference.max()
    # and the served fp16 video against diffusers' fp32 pipeline
    psnr = frame_psnr(served.frames, diffusers_frames(tiny_pipeline, photo, steps=10, guidance=7.5, **shape))
    assert min(psnr) >= MIN_FP16_PSNR_DB, f"PSNR per frame {[round(p, 1) for p in psnr]}"


@pytest.mark.gpu
@needs_cuda
def test_a_lora_request_on_the_gpu_gets_its_adapter_and_the_base_model_comes_back(
    gpu_triton, tiny_pipeline, photo_png, tmp_path
):
    """Eager and with the UNet in CUDA graphs: a graph replays the base weights, so a request with a LoRA must
    run the module itself (its video differs from the base one), and the base model's video is unchanged after."""
    from lora_files import MadeLora

    from i2v.model import lora_registry

    lora = MadeLora(tiny_pipeline.unet, tmp_path / "a.safetensors", seed=1, rank=4, alpha=2)
    params = dict(image=photo_png, prompt=PROMPT, height=64, width=96, num_frames=16, num_inference_steps=10, seed=5)
    lora_registry.add(gpu_triton.model_repository, "a", lora.path)
    try:
        with I2VClient(gpu_triton.endpoints.grpc_url) as client:
            base, adapted, base_again = (
                client.generate(GenerationRequest(return_frames=True, **params, **extra)).frames
                for extra in ({}, {"lora": "a", "lora_scale": 1.0}, {})
            )
    finally:
        lora_registry.remove(gpu_triton.model_repository, "a")
    assert np.array_equal(base, base_again)
    assert np.abs(adapted.astype(np.int16) - base.astype(np.int16)).max() > 8, "the LoRA changed nothing"


@pytest.fixture(scope="module")
def handoff_triton(tmp_path_factory):
    from i2v.serving.triton_server import EmbeddedTritonServer

    repository = tmp_path_factory.mktemp("handoff")
    shutil.copytree(HERE / "gpu_handoff", repository, dirs_exist_ok=True)
    with EmbeddedTritonServer(repository, log_file=tmp_path_factory.mktemp("handoff-triton") / "server.log") as server:
        yield server


@pytest.mark.gpu
@needs_cuda
def test_a_gpu_tensor_written_on_a_side_stream_arrives_whole_through_bls(handoff_triton):
    """256 MB written at the end of slow side-stream work, handed to another model at once (i2v.serving.tensors):
    the receiver must see every element written, request after request."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(handoff_triton.endpoints.grpc_url) as client:
        for value in range(1, 11):
            tensor = grpcclient.InferInput("value", [1], "FP32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.float32))
            result = client.infer("writer", [tensor])
            assert int(result.as_numpy("mismatches")[0]) == 0, f"request {value}: stale elements arrived"
