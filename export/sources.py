"""Where an I2VGen-XL comes from: a hub id or local folder, the tiny random model, or the full-size model.

The tiny model and real weights end in `I2VGenXLPipeline.from_pretrained`, the production loading path: the tiny
model is built from configs, written with `save_pretrained` and read back, so tests exercise the same code as real
weights. The full-size random model (GPU benchmarks) is built in memory: written out, its random weights
would only be read back (about 10 GB in fp32).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline
from diffusers.models.unets import I2VGenXLUNet
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from i2v.model.info import FULL_SIZE_RANDOM_MODEL, TINY_MODEL
from i2v.model.parts import PartSpec, part_specs

DEFAULT_TINY_DIR = Path("models/i2vgen-xl-tiny")

# The full-size random model is for measuring: its scheduler does not change compute or memory, so it takes
# diffusers' plain DDIM settings. Real weights bring their own scheduler_config.json.
FULL_SIZE_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
}


# The tiny model serves on a CPU: small defaults that make a request take seconds. Real weights keep the
# parameter table's (diffusers') defaults.
TINY_SERVING_DEFAULTS = {"height": 64, "width": 96, "num_frames": 16, "num_inference_steps": 25}


def serving_defaults(source: str | Path) -> dict:
    """The defaults a model from `source` is served with, where they differ from the parameter table's."""
    return dict(TINY_SERVING_DEFAULTS) if str(source) == TINY_MODEL else {}


def model_id(source: str | Path) -> str:
    """The model's name as clients see it: a hub id or 'tiny' as given, a local folder by its name alone
    (a server must not tell clients where its files are)."""
    path = Path(source)
    return path.resolve().name if path.exists() else str(source)


def tiny_resolved(source: str | Path, cache_dir: Path = DEFAULT_TINY_DIR) -> str | Path:
    """`tiny` as the folder that holds it (built there the first time); any other source as it is."""
    if str(source) != TINY_MODEL:
        return source
    if not (cache_dir / "model_index.json").exists():
        save_tiny_pipeline(cache_dir)
    return cache_dir


def load_pipeline(source: str | Path, *, cache_dir: Path = DEFAULT_TINY_DIR) -> I2VGenXLPipeline:
    """Load a pipeline from `tiny`, `full-size-random`, a local diffusers folder or a hub id."""
    if str(source) == TINY_MODEL:
        source = tiny_resolved(source, cache_dir)
    elif str(source) == FULL_SIZE_RANDOM_MODEL:
        return build_full_size_pipeline()
    else:
        check_source(source)
    try:
        return I2VGenXLPipeline.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:  # the Hub's words (no such repository, no network, gated): the first line says which
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(f"cannot load model {str(source)!r}: {reason}") from exc


class ModelSourceError(ValueError):
    """`--model` names nothing loadable: a missing folder, a folder not in diffusers layout, an unknown hub id."""


def check_source(source: str | Path) -> None:
    """A local folder must hold a diffusers pipeline; a name that looks like a path is not sent to the Hub."""
    path = Path(source)
    looks_local = path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") > 1
    if not looks_local:
        return  # a hub id: `from_pretrained` asks the Hub (or its cache)
    if not path.is_dir():
        raise ModelSourceError(
            f"--model {str(source)!r}: no such folder (give a diffusers folder or a hub id such as ali-vilab/i2vgen-xl)"
        )
    if not (path / "model_index.json").is_file():
        raise ModelSourceError(
            f"--model {str(source)!r} is not a diffusers pipeline folder (no model_index.json): "
            "save one with I2VGenXLPipeline.save_pretrained, or give a hub id"
        )


def save_tiny_pipeline(path: Path, seed: int = 0) -> Path:
    """Build the tiny random-weight pipeline and write it in diffusers layout."""
    build_tiny_pipeline(seed).save_pretrained(path)
    return path


def build_tiny_pipeline(seed: int = 0) -> I2VGenXLPipeline:
    """diffusers' own test-sized I2VGen-XL (tests/pipelines/i2vgen_xl), with two changes.

    The VAE has four levels instead of one so that it downsamples by 8 like the real model: latent shapes,
    size rules and memory then scale as in production. The CLIP tokenizer is made here, not downloaded.
    """
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = I2VGenXLUNet(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=4,
        attention_head_dim=4,
        num_attention_heads=None,
        norm_num_groups=2,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        sample_size=32,
        norm_num_groups=2,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=4,
            intermediate_size=16,
            layer_norm_eps=1e-05,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            hidden_act="gelu",
            projection_dim=32,
        )
    )
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    scheduler = DDIMScheduler(**FULL_SIZE_SCHEDULER)
    return I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        unet=unet,
        scheduler=scheduler,
    )


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP BPE tokenizer with no merges: every character is one token, no download needed."""
    chars = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def full_size_configs() -> dict[str, dict]:
    """The architecture of ali-vilab/i2vgen-xl: UNet, VAE and OpenCLIP ViT-H/14 text and vision towers."""
    return {
        "unet": {
            "attention_head_dim": 64,
            "block_out_channels": [320, 640, 1280, 1280],
            "cross_attention_dim": 1024,
            "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
            "in_channels": 4,
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "num_attention_heads": None,
            "out_channels": 4,
            "sample_size": 32,
            "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
        },
        "vae": {
            "act_fn": "silu",
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "in_channels": 3,
            "latent_channels": 4,
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "out_channels": 3,
            "sample_size": 768,
            "scaling_factor": 0.18215,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
        },
        "text_encoder": {
            "hidden_act": "gelu",
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "max_position_embeddings": 77,
            "num_attention_heads": 16,
            "num_hidden_layers": 23,
            "projection_dim": 1024,
            "vocab_size": 49408,
        },
        "image_encoder": {
            "hidden_act": "gelu",
            "hidden_size": 1280,
            "image_size": 224,
            "intermediate_size": 5120,
            "num_attention_heads": 16,
            "num_hidden_layers": 32,
            "patch_size": 14,
            "projection_dim": 1024,
        },
    }


FULL_SIZE_VAE_SCALE_FACTOR = 2 ** (len(full_size_configs()["vae"]["block_out_channels"]) - 1)


def full_size_specs() -> dict[str, PartSpec]:
    """The part specs of the full-size model, from its configs alone (no weights, nothing built)."""
    cfg = full_size_configs()
    return part_specs(
        text_len=cfg["text_encoder"]["max_position_embeddings"],
        text_dim=cfg["text_encoder"]["hidden_size"],
        clip_size=cfg["image_encoder"]["image_size"],
        image_embed_dim=cfg["image_encoder"]["projection_dim"],
        latent_channels=cfg["unet"]["in_channels"],
    )


def build_full_size_modules(device: str | torch.device = "cpu") -> dict[str, torch.nn.Module]:
    """The five full-size modules with random weights; `device="meta"` builds them without allocating."""
    cfg = full_size_configs()
    with torch.device(device):
        return {
            "unet": I2VGenXLUNet(**cfg["unet"]),
            "vae": AutoencoderKL(**cfg["vae"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])),
            "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"])),
        }


def build_full_size_pipeline(device: str | torch.device = "cpu") -> I2VGenXLPipeline:
    """Full-size random weights: the real model's compute and memory, for GPU benchmarks."""
    modules = build_full_size_modules(device)
    return I2VGenXLPipeline(
        **modules,
        tokenizer=build_tiny_tokenizer(),
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
        scheduler=DDIMScheduler(**FULL_SIZE_SCHEDULER),
    )
