"""Model sources: the tiny model round-trips through save_pretrained/from_pretrained; full size instantiates."""

from __future__ import annotations

import torch

from i2v.export.sources import build_full_size_modules, build_tiny_tokenizer


def test_tiny_model_loads_back_with_from_pretrained(tiny_dir, tiny_pipeline):
    from diffusers import I2VGenXLPipeline

    assert (tiny_dir / "model_index.json").exists()
    assert isinstance(tiny_pipeline, I2VGenXLPipeline)
    again = I2VGenXLPipeline.from_pretrained(tiny_dir)
    for name in ("unet", "vae", "text_encoder", "image_encoder"):
        ours, theirs = getattr(tiny_pipeline, name).state_dict(), getattr(again, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_tiny_vae_downsamples_by_eight_like_the_real_model(tiny_pipeline):
    latents = tiny_pipeline.vae.encode(torch.zeros(1, 3, 64, 96)).latent_dist.mean
    assert latents.shape == (1, 4, 8, 12)


def test_tiny_tokenizer_is_made_locally_and_pads_to_77():
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer("A lighthouse at dusk", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a lighthouse at dusk"


def test_full_size_architecture_instantiates_on_meta_with_the_real_parameter_counts():
    modules = build_full_size_modules("meta")
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    assert all(p.is_meta for m in modules.values() for p in m.parameters())
    assert counts == EXPECTED_PARAMETERS, counts


# The published checkpoint's sizes: UNet 1.42 B (2.84 GB in fp16), the Stable Diffusion VAE (83.65 M),
# OpenCLIP ViT-H/14 text (23 layers, 340.4 M) and vision towers with projection (632.1 M).
EXPECTED_PARAMETERS = {
    "unet": 1_420_469_224,
    "vae": 83_653_863,
    "text_encoder": 340_387_840,
    "image_encoder": 632_076_800,
}
