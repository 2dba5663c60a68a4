"""The served video equals diffusers' I2VGenXLPipeline on the same model, inputs and seed."""

from __future__ import annotations

import numpy as np
import pytest
from diffusers_reference import NEGATIVE, PROMPT, diffusers_frames

from i2v.client.types import GenerationRequest
from i2v.video import decode_mp4


@pytest.mark.parametrize(
    ("height", "width", "num_frames", "guidance", "fps", "seed"),
    [(64, 64, 8, 9.0, 16, 1234), (64, 96, 16, 5.5, 8, 7)],
    ids=["64x64x8", "64x96x16"],
)
def test_served_video_equals_diffusers_pipeline(
    client, tiny_pipeline, photo, photo_png, height, width, num_frames, guidance, fps, seed
):
    steps = 10
    request = GenerationRequest(
        image=photo_png,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        fps=fps,
        seed=seed,
        return_frames=True,
    )
    result = client.generate(request)
    expected = diffusers_frames(
        tiny_pipeline,
        photo,
        height=height,
        width=width,
        num_frames=num_frames,
        steps=steps,
        guidance=guidance,
        fps=fps,
        seed=seed,
    )
    assert result.frames.shape == (num_frames, height, width, 3)
    # ONNX Runtime vs PyTorch differ by ~1e-6 in float; after rounding to uint8 a pixel may flip by one level.
    difference = np.abs(result.frames.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1, f"max difference {difference.max()} levels"
    assert (difference > 0).mean() < 0.01

    video = decode_mp4(result.video)
    assert (video.codec, video.pix_fmt) == ("h264", "yuv420p")
    assert video.frames.shape == result.frames.shape
    assert video.fps == pytest.approx(fps)
    assert result.metadata["seed"] == seed
    assert result.metadata["parameters"]["num_frames"] == num_frames


def test_a_different_seed_gives_a_different_video(client, photo_png):
    def frames(seed):
        request = GenerationRequest(
            image=photo_png,
            prompt=PROMPT,
            seed=seed,
            num_frames=8,
            height=64,
            width=64,
            num_inference_steps=10,
            return_frames=True,
        )
        return client.generate(request).frames.astype(np.int16)

    assert np.abs(frames(1) - frames(2)).mean() > 5


def test_progress_arrives_once_per_step_in_order_before_the_video(client, photo_png):
    seen = []
    request = GenerationRequest(
        image=photo_png, prompt=PROMPT, num_inference_steps=12, num_frames=8, height=64, width=64
    )
    result = client.generate(request, on_progress=lambda step, total: seen.append((step, total)))
    assert seen == [(step, 12) for step in range(1, 13)]
    assert [(p.step, p.total) for p in result.progress] == seen
    assert result.video  # the final response came after every progress response


def test_omitted_parameters_take_the_model_defaults_and_a_random_seed(client, photo_png):
    first = client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, num_inference_steps=10))
    second = client.generate(GenerationRequest(image=photo_png, prompt=PROMPT, num_inference_steps=10))
    params = first.metadata["parameters"]
    assert (params["height"], params["width"], params["num_frames"]) == (64, 96, 16)
    assert params["guidance_scale"] == 9.0 and params["fps"] == 16
    assert first.seed != second.seed


def test_the_decoder_takes_a_requests_decode_chunks_in_one_call_with_the_same_video(
    triton, client, model_repository, photo, photo_png
):
    """Each part call is a hop between processes. The part runner splits a decoder call into the request's
    decode chunks itself, so the BLS sends it as many chunks as 32 MiB of frames hold: one call here for 16
    frames in chunks of 2, where there were 8, and every chunk is computed as before: the frames equal the same
    loop in this process calling the decoder chunk by chunk, to the bit."""
    import tritonclient.grpc

    from i2v.benchmarks.runners import OnnxRuntimeParts
    from i2v.params import GenerationParams
    from i2v.serving.generator import VideoGenerator

    params = dict(
        prompt=PROMPT, height=64, width=96, num_frames=16, num_inference_steps=10, decode_chunk_size=2, seed=3
    )
    statistics = tritonclient.grpc.InferenceServerClient(triton.endpoints.grpc_url)

    def decoder_calls() -> int:
        stats = statistics.get_inference_statistics(model_name="vae_decoder", as_json=True)["model_stats"][0]
        return int(stats.get("execution_count", 0))

    before = decoder_calls()
    served = client.generate(GenerationRequest(image=photo_png, return_frames=True, **params))
    assert decoder_calls() - before == 1
    pipeline = model_repository / "i2vgen_xl" / "1" / "pipeline"
    expected = VideoGenerator(pipeline, OnnxRuntimeParts(model_repository))(photo, GenerationParams(**params))
    assert np.array_equal(served.frames, expected.frames)
