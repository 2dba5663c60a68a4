"""The GPU memory plan of a TensorRT repository (figures TensorRT reports at export, here stated directly) and the
CUDA memory pool sized from the part specs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from i2v.export.memory_plan import (
    GIB,
    MIB,
    EngineMemory,
    GpuMemoryBudgetError,
    cuda_memory_pool_bytes,
    default_cuda_memory_pool_bytes,
    plan,
    transfer_bytes,
)
from i2v.export.profiles import DEFAULT_SUPPORTED_SHAPES, part_profiles
from i2v.export.sources import FULL_SIZE_VAE_SCALE_FACTOR, full_size_specs
from i2v.model.info import SupportedShapes

UNET = EngineMemory("unet", weights_bytes=3 * GIB, profile_bytes=(2 * GIB, 4 * GIB, 10 * GIB), contexts=3)
TEXT = EngineMemory("text_encoder", weights_bytes=GIB // 2, profile_bytes=(GIB // 4,), contexts=1)


def test_triton_24_10_holds_every_context_at_the_largest_profile():
    assert UNET.held_bytes("static") == 3 * GIB + 3 * 10 * GIB
    assert UNET.held_bytes("on-profile-change") == 3 * GIB + (2 + 4 + 10) * GIB
    assert plan([UNET, TEXT]).held_bytes == UNET.held_bytes("static") + TEXT.held_bytes("static")


def test_a_plan_over_the_budget_is_refused_naming_the_biggest_engines_and_the_remedy():
    with pytest.raises(GpuMemoryBudgetError) as refused:
        plan([UNET, TEXT], budget_gib=20).check()
    message = str(refused.value)
    assert "33.8 GiB" in message and "over the budget of 20.0 GiB" in message
    assert "unet 33.0 GiB" in message and "--resolutions" in message and "--max-frames" in message
    assert plan([UNET, TEXT], budget_gib=40).check().held_bytes < 40 * GIB
    assert plan([UNET, TEXT], allocation="on-profile-change", budget_gib=20).check()  # 19.8 GiB fits


def test_the_plan_is_written_beside_the_engines(tmp_path):
    path = plan([UNET, TEXT], budget_gib=40).save(tmp_path)
    data = json.loads(path.read_text())
    assert data["allocation"] == "static" and data["held_bytes"] == UNET.held_bytes() + TEXT.held_bytes()
    assert [e["part"] for e in data["engines"]] == ["unet", "text_encoder"]
    assert (
        "total held once loaded (static allocation): 33.75 GiB of a 40.0 GiB budget"
        in plan([UNET, TEXT], budget_gib=40).describe()
    )


def test_cuda_pool_holds_twice_the_largest_call_of_the_full_size_model():
    """At 1024x1024 the VAE decoder's 8-frame chunk is the largest call: 8x3x1024x1024 fp32 frames out."""
    specs = full_size_specs()
    decoder = transfer_bytes(
        specs["vae_decoder"], {"batch": 8, "height": 1024, "width": 1024, "latent_height": 128, "latent_width": 128}
    )
    assert decoder == 8 * 3 * 1024 * 1024 * 4 + 8 * 4 * 128 * 128 * 4
    assert default_cuda_memory_pool_bytes() == 256 * MIB  # ceil(2 x 104.9 MB / 64 MiB) x 64 MiB
    narrow = SupportedShapes(resolutions=((512, 512),), num_frames=(8, 16), max_decode_chunk_size=1)
    assert cuda_memory_pool_bytes(specs, narrow, FULL_SIZE_VAE_SCALE_FACTOR) == 64 * MIB


def test_each_context_is_one_listed_profile_of_the_part():
    """What `engine_memory` is told: Triton creates one context per profile the config lists."""
    specs = full_size_specs()
    unet = part_profiles(specs["unet"], DEFAULT_SUPPORTED_SHAPES, FULL_SIZE_VAE_SCALE_FACTOR)
    text = part_profiles(specs["text_encoder"], DEFAULT_SUPPORTED_SHAPES, FULL_SIZE_VAE_SCALE_FACTOR)
    assert (len(unet), len(text)) == (len(DEFAULT_SUPPORTED_SHAPES.resolutions), 1)


def test_shape_options_belong_to_the_tensorrt_runtime(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "i2v.cli", "export", "--resolutions", "512x512", "--output", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1 and "use --runtime tensorrt" in run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "i2v.cli", "export", "--runtime", "tensorrt", "--resolutions", "512by512"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "expected HEIGHTxWIDTH pairs" in bad.stderr
