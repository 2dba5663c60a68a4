"""`i2v lora list` (the client, asking the server) beside `i2v lora add` (the files of the repository)."""

from __future__ import annotations

import re

import pytest

from i2v.cli import main
from i2v.model import lora_registry

peft = pytest.importorskip("peft")
from lora_files import MadeLora  # noqa: E402  (needs peft)


def test_lora_add_and_lora_list_print_an_adapter_s_size_alike(
    tiny_pipeline, model_repository, triton, tmp_path, capsys
):
    """A 49 KB file is "0.05 MB" in both, not "0.0 MB" in one of them."""
    lora = MadeLora(tiny_pipeline.unet, tmp_path / "small.safetensors", seed=1, rank=4)
    size = f"{lora.path.stat().st_size / 1e6:.2f} MB"
    try:
        assert main(["lora", "add", "small", str(lora.path), "--model-repository", str(model_repository)]) == 0
        added = capsys.readouterr().out
        assert main(["lora", "list", "--url", triton.endpoints.grpc_url]) == 0
        listed = capsys.readouterr().out
    finally:
        lora_registry.remove(model_repository, "small")
    assert re.findall(r"(\d+\.\d+) MB", added) == re.findall(r"(\d+\.\d+) MB", listed) == [size.split()[0]]
