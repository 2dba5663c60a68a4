"""Parameter checks shared by client and server: every error names the field and the allowed range."""

from __future__ import annotations

import math

import pytest

from i2v.params import GenerationParams, InvalidParameterError


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_frames": 7}, "num_frames must be between 8 and 32, got 7"),
        ({"num_frames": 33}, "num_frames must be between 8 and 32, got 33"),
        ({"fps": 30}, "fps must be between 4 and 24, got 30"),
        ({"num_inference_steps": 101}, "num_inference_steps must be between 10 and 100, got 101"),
        ({"guidance_scale": math.nan}, "guidance_scale must be between 1 and 20, got nan"),
        ({"guidance_scale": -1.0}, "guidance_scale must be between 1 and 20, got -1.0"),
        ({"guidance_scale": "9"}, "guidance_scale must be a number, got str"),
        ({"height": 70}, "height must be a multiple of 16, got 70"),
        ({"width": 4096}, "width must be between 64 and 1280, got 4096"),
        ({"num_frames": 16.0}, "num_frames must be an integer, got float"),
        ({"num_frames": True}, "num_frames must be an integer, got bool"),
        ({"seed": -1}, "seed must be between 0 and"),
        ({"prompt": ""}, "prompt must be a non-empty string"),
        ({"prompt": "x" * 2001}, "prompt must be at most 2000 characters, got 2001"),
        ({"negative_prompt": None}, "negative_prompt must be a string, got NoneType"),
    ],
)
def test_bad_value_is_refused_with_its_name_and_range(overrides, message):
    params = GenerationParams(**{"prompt": "a lighthouse", "height": 64, "width": 96, **overrides})
    with pytest.raises(InvalidParameterError, match=message.replace("(", r"\(")):
        params.validate(size_multiple=16)


def test_defaults_are_the_diffusers_pipeline_defaults():
    params = GenerationParams(prompt="x").validate()
    assert (params.height, params.width, params.num_frames, params.fps) == (704, 1280, 16, 16)
    assert (params.num_inference_steps, params.guidance_scale) == (50, 9.0)


@pytest.mark.parametrize(("guidance_scale", "guided", "batch"), [(1.0, False, 1), (1.01, True, 2), (9.0, True, 2)])
def test_guidance_above_one_runs_the_parts_on_a_batch_of_two(guidance_scale, guided, batch):
    params = GenerationParams(prompt="x", guidance_scale=guidance_scale)
    assert (params.guided, params.batch) == (guided, batch)
