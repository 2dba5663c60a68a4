"""The declared shape table in, TensorRT optimization profiles, config.pbtxt dims and the server-side check out."""

from __future__ import annotations

import json

import pytest
from model_configs import parse_config
from tritonclient.grpc import model_config_pb2

from i2v.export.profiles import DEFAULT_SUPPORTED_SHAPES, config_dims, part_profiles
from i2v.export.triton_configs import tensorrt_part_config
from i2v.model.info import ModelInfo, SupportedShapes
from i2v.model.parts import PART_NAMES, part_specs
from i2v.params import RESOLUTION_PRESETS, GenerationParams, InvalidParameterError

# The full-size model's static sizes (CLIP ViT-H text and image towers, 4 latent channels), VAE factor 8.
SPECS = part_specs(text_len=77, text_dim=1024, clip_size=224, image_embed_dim=1024, latent_channels=4)
VAE = 8
SHAPES = SupportedShapes(resolutions=((512, 512), (704, 1280)), num_frames=(8, 32), max_decode_chunk_size=4)


def test_unet_gets_one_profile_per_resolution_with_guidance_batch_and_frame_range():
    profiles = part_profiles(SPECS["unet"], SHAPES, VAE)
    assert [p.resolution for p in profiles] == [(512, 512), (704, 1280)]
    sample = profiles[1].inputs["sample"]
    assert sample.min == (1, 4, 8, 88, 160)
    assert sample.opt == (2, 4, 16, 88, 160)  # guidance batch, the default 16 frames
    assert sample.max == (2, 4, 32, 88, 160)
    assert profiles[0].inputs["timestep"].min == profiles[0].inputs["timestep"].max == (1,)
    hidden = profiles[0].inputs["encoder_hidden_states"]
    assert (hidden.min, hidden.opt, hidden.max) == ((1, 77, 1024), (2, 77, 1024), (2, 77, 1024))


def test_vae_parts_follow_pixels_and_latents_and_the_decode_chunk():
    encoder = part_profiles(SPECS["vae_encoder"], SHAPES, VAE)
    assert [p.inputs["image"].max for p in encoder] == [(1, 3, 512, 512), (1, 3, 704, 1280)]
    assert encoder[0].inputs["image"].min == (1, 3, 512, 512)
    decoder = part_profiles(SPECS["vae_decoder"], SHAPES, VAE)
    latents = decoder[1].inputs["latents"]
    assert (latents.min, latents.opt, latents.max) == ((1, 4, 88, 160), (1, 4, 88, 160), (4, 4, 88, 160))


def test_parts_without_spatial_axes_get_a_single_profile():
    for name, batch in (("text_encoder", (1, 2, 2)), ("image_encoder", (1, 1, 2))):
        (profile,) = part_profiles(SPECS[name], SHAPES, VAE)
        assert profile.resolution is None
        first = next(iter(profile.inputs.values()))
        assert (first.min[0], first.opt[0], first.max[0]) == batch


def test_default_table_covers_the_resolution_presets_and_8_to_32_frames():
    assert DEFAULT_SUPPORTED_SHAPES.resolutions == tuple(RESOLUTION_PRESETS.values())
    assert DEFAULT_SUPPORTED_SHAPES.num_frames == (8, 32)
    profiles = part_profiles(SPECS["unet"], DEFAULT_SUPPORTED_SHAPES, VAE)
    assert len(profiles) == len(RESOLUTION_PRESETS)
    assert {p.inputs["sample"].max[3:] for p in profiles} == {(h // 8, w // 8) for h, w in RESOLUTION_PRESETS.values()}


def test_config_dims_fix_what_every_profile_fixes_and_leave_the_rest_dynamic():
    unet = part_profiles(SPECS["unet"], SHAPES, VAE)
    dims = {t.name: config_dims(t, unet) for t in (*SPECS["unet"].inputs, *SPECS["unet"].outputs)}
    assert dims["sample"] == [-1, 4, -1, -1, -1]  # batch 1-2, frames 8-32, two latent sizes
    assert dims["timestep"] == [1]
    assert dims["encoder_hidden_states"] == [-1, 77, 1024]
    assert dims["noise_pred"] == [-1, 4, -1, -1, -1]
    one = SupportedShapes(resolutions=((512, 512),), num_frames=(16, 16))
    vae_encoder = part_profiles(SPECS["vae_encoder"], one, VAE)
    assert config_dims(SPECS["vae_encoder"].inputs[0], vae_encoder) == [1, 3, 512, 512]
    assert config_dims(SPECS["vae_encoder"].outputs[0], vae_encoder) == [1, 4, 64, 64]
    unet_one = part_profiles(SPECS["unet"], one, VAE)
    assert config_dims(SPECS["unet"].inputs[0], unet_one) == [-1, 4, 16, 64, 64]


@pytest.mark.parametrize("name", PART_NAMES)
def test_tensorrt_config_parses_and_declares_the_profile_dims(name):
    spec = SPECS[name]
    profiles = part_profiles(spec, SHAPES, VAE)
    config = parse_config(tensorrt_part_config(spec, profiles))
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 0
    assert [t.name for t in config.input] == [t.name for t in spec.inputs]
    assert [t.name for t in config.output] == [t.name for t in spec.outputs]
    for declared, tensor in zip((*config.input, *config.output), (*spec.inputs, *spec.outputs), strict=True):
        assert list(declared.dims) == config_dims(tensor, profiles)
    (group,) = config.instance_group
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
    assert list(group.profile) == [str(i) for i in range(len(profiles))]  # every profile usable, not just 0


def test_supported_shapes_refuse_with_the_supported_list():
    params = GenerationParams(prompt="x", height=640, width=640, num_frames=16)
    with pytest.raises(InvalidParameterError) as error:
        DEFAULT_SUPPORTED_SHAPES.check(params)
    assert str(error.value) == (
        "height x width 640x640 is not supported by this model's TensorRT engines; supported: "
        "512x512, 512x896, 768x768, 704x1280, 1024x1024 (frames 8-32)"
    )
    narrow = SupportedShapes(resolutions=((512, 512),), num_frames=(8, 16), max_decode_chunk_size=2)
    with pytest.raises(InvalidParameterError, match="num_frames 24 is not supported .*; supported: 8-16"):
        narrow.check(GenerationParams(prompt="x", height=512, width=512, num_frames=24))
    with pytest.raises(InvalidParameterError, match="decode_chunk_size 4 is not supported .*; supported: 1-2"):
        narrow.check(GenerationParams(prompt="x", height=512, width=512, num_frames=8, decode_chunk_size=4))
    narrow.check(GenerationParams(prompt="x", height=512, width=512, num_frames=16, decode_chunk_size=2))


def test_model_info_round_trips_supported_shapes_and_reads_old_files(tmp_path):
    info = ModelInfo("tiny", 8, 0.18215, 4, 16, 77, {"height": 64}, runtime="tensorrt", supported_shapes=SHAPES)
    info.save(tmp_path)
    loaded = ModelInfo.load(tmp_path)
    assert loaded == info and loaded.supported_shapes.resolutions == ((512, 512), (704, 1280))
    old = tmp_path / "old"
    old.mkdir()
    written = json.loads((tmp_path / "model_info.json").read_text())
    legacy_fields = {k: v for k, v in written.items() if k not in ("runtime", "supported_shapes")}
    (old / "model_info.json").write_text(json.dumps(legacy_fields))
    legacy = ModelInfo.load(old)  # written before runtimes existed: no runtime, no supported shapes
    assert legacy.runtime == "onnxruntime" and legacy.supported_shapes is None
    legacy.check_supported(GenerationParams(prompt="x", height=640, width=640))  # any shape
