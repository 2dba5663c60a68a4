"""LoRA adapters per request: files read in either naming, checked against the served UNet, registered without a
restart, and served on ONNX Runtime and torch equal to diffusers' pipeline whose UNet carries the same adapter
through PEFT. LoRA files are made here, for the tiny model, with PEFT, into temporary folders."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading

import numpy as np
import pytest
import torch
from diffusers_reference import NEGATIVE, PROMPT, diffusers_frames
from safetensors.torch import save_file

from i2v.arguments import EXIT_UNAVAILABLE
from i2v.cli import main
from i2v.client.errors import InvalidInputError
from i2v.client.grpc_client import I2VClient
from i2v.client.types import GenerationRequest
from i2v.model import lora_layer_map, lora_registry
from i2v.model.lora import LoraFileError, read_lora
from i2v.model.repository_layout import LORA_TARGETS_FILE
from i2v.params import InvalidParameterError

peft = pytest.importorskip("peft")
from lora_files import ATTENTION, MadeLora  # noqa: E402  (needs peft)

SHAPE = {"height": 64, "width": 64, "num_frames": 8, "steps": 10, "guidance": 7.5, "fps": 8, "seed": 99}


def reference(pipe, photo, unet=None):
    """diffusers' pipeline, its UNet swapped for `unet` (PEFT adapter) for this call."""
    original = pipe.unet
    pipe.unet = unet if unet is not None else original
    try:
        return diffusers_frames(pipe, photo, **SHAPE)
    finally:
        pipe.unet = original


def lora_request(photo_png, **lora) -> GenerationRequest:
    """The reference request's shape and seed, with the LoRA fields given."""
    s = SHAPE
    return GenerationRequest(
        image=photo_png,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=s["height"],
        width=s["width"],
        num_frames=s["num_frames"],
        num_inference_steps=s["steps"],
        guidance_scale=s["guidance"],
        fps=s["fps"],
        seed=s["seed"],
        return_frames=True,
        **lora,
    )


def served(client, photo_png, **lora) -> np.ndarray:
    result = client.generate(lora_request(photo_png, **lora))
    assert result.metadata["parameters"]["lora"] == lora.get("lora", "")
    return result.frames


def assert_equal_video(got: np.ndarray, expected: np.ndarray) -> None:
    difference = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1, f"max difference {difference.max()} levels"
    assert (difference > 0).mean() < 0.01


@pytest.fixture(scope="module")
def loras(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    return {
        "a": MadeLora(tiny_pipeline.unet, folder / "a.safetensors", seed=1, rank=4, alpha=2),
        # a different rank per module, every linear layer of the attention and feed-forward blocks
        "b": MadeLora(
            tiny_pipeline.unet,
            folder / "b.safetensors",
            seed=2,
            rank=2,
            rank_pattern={"attn1.to_q": 6, "ff.net.2": 3},
            targets=[*ATTENTION, "proj", "ff.net.2"],
        ),
        "old": MadeLora(tiny_pipeline.unet, folder / "old.safetensors", seed=3, naming="old"),
    }


@contextlib.contextmanager
def emptied_afterwards(repository):
    """A session server's repository, its registry emptied of what the test registered."""
    try:
        yield repository
    finally:
        for name in lora_registry.registered(lora_registry.lora_dir(repository)):
            lora_registry.remove(repository, name)


@pytest.fixture
def registry(model_repository):
    with emptied_afterwards(model_repository):
        yield model_repository


# ---------------------------------------------------------------------------------------------------------
# The file: namings, alphas, refusals.


def test_both_namings_read_to_the_unet_modules_with_alpha_over_rank(loras, tiny_pipeline):
    a = read_lora(loras["a"].path)
    module = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    assert module in a.layers and a.ranks == [4] and a.target_modules == ["to_k", "to_out.0", "to_q", "to_v"]
    layer = a.layers[module]
    assert layer.alpha == 2.0
    peft_delta = loras["a"].unet.get_submodule(module).get_delta_weight("default")  # PEFT's own merge: alpha / r
    assert torch.allclose(layer.delta(1.0), peft_delta, atol=1e-6)
    assert torch.allclose(layer.delta(0.5), 0.5 * peft_delta, atol=1e-6)

    old = read_lora(loras["old"].path)  # lora.down / lora.up, no `unet.` prefix, no alphas: scale 1
    assert set(old.layers) == set(a.layers)
    assert old.layers[module].alpha == old.layers[module].rank == 4
    b = read_lora(loras["b"].path)
    assert b.ranks == [2, 3, 6]


def test_corrupt_or_incomplete_files_are_refused_saying_why(tmp_path, loras):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(loras["a"].path.read_bytes()[:300])
    with pytest.raises(LoraFileError, match="not a readable safetensors file"):
        read_lora(corrupt)
    only_down = tmp_path / "half.safetensors"
    save_file({"unet.conv_in.lora_A.weight": torch.zeros(4, 4, 3, 3)}, str(only_down))
    with pytest.raises(LoraFileError, match="the LoRA of conv_in is incomplete: it has no lora_B.weight"):
        read_lora(only_down)


def conv_in_pair(rank: int) -> dict[str, torch.Tensor]:
    """A LoRA of the tiny UNet's conv_in (4 -> 32 channels, 3x3) of this rank."""
    down, up = torch.zeros(rank, 4, 3, 3), torch.zeros(32, rank, 1, 1)
    return {"unet.conv_in.lora_A.weight": down, "unet.conv_in.lora_B.weight": up}


@pytest.mark.parametrize(
    ("tensors", "metadata", "message"),
    [
        ({"unet.conv_in.alpha": torch.tensor(4.0)}, None, "adapts no layer"),
        (conv_in_pair(0), None, "the LoRA of conv_in is empty"),
        ({"unet.conv_in.alpha": torch.tensor([1.0, 2.0])}, None, "conv_in.alpha must hold one number"),
        (conv_in_pair(4), {"lora_adapter_metadata": json.dumps({"lora_alpha": "abc"})}, "not a number per module"),
        (conv_in_pair(4), {"lora_adapter_metadata": json.dumps({"alpha_pattern": [1]})}, "not a number per module"),
    ],
    ids=["no layers", "rank 0", "alpha of two numbers", "alpha not a number", "alpha_pattern not a mapping"],
)  # fmt: skip
def test_an_empty_lora_or_bad_alphas_are_refused_saying_why(tmp_path, tensors, metadata, message):
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(LoraFileError, match=message):
        read_lora(path)


def test_lora_add_where_the_registry_cannot_be_written_says_so(registry, loras, capsys, monkeypatch, tmp_path):
    """I2V_LORA_DIR naming a file (as a read-only mount would): a message naming the folder, exit 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(lora_registry.LORA_DIR_ENV, str(blocker))
    assert main(["lora", "add", "style-a", str(loras["a"].path), "--model-repository", str(registry)]) == 2
    assert "cannot create the registry folder" in capsys.readouterr().err


def test_a_damaged_description_lists_the_adapter_as_unchecked(registry, loras):
    """An adapter's `<name>.json` hand-edited into another shape: listed with its size, unchecked, and the
    other adapters as they are."""
    lora_registry.add(registry, "style-a", loras["a"].path)
    lora_registry.add(registry, "style-b", loras["b"].path)
    folder = lora_registry.lora_dir(registry)
    for damage in ("[1]", '"hi"', "null", json.dumps({"ranks": 4, "layers": 1, "target_modules": [], "size_bytes": 1})):
        (folder / "style-a.json").write_text(damage)
        listed = {entry["name"]: entry for entry in lora_registry.describe(folder)}
        assert listed["style-a"] == {"name": "style-a", "size_bytes": loras["a"].path.stat().st_size, "checked": False}
        assert listed["style-b"]["checked"] and listed["style-b"]["ranks"] == [2, 3, 6]


def test_lora_commands_register_list_and_remove(registry, loras, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(lora_registry.LORA_DIR_ENV, str(tmp_path / "mounted"))  # a separate mount
    assert main(["lora", "add", "style-a", str(loras["a"].path), "--model-repository", str(registry)]) == 0
    assert "registered style-a: rank 4" in capsys.readouterr().out
    assert (tmp_path / "mounted" / "style-a.safetensors").is_file()
    assert [a["name"] for a in lora_registry.describe(tmp_path / "mounted")] == ["style-a"]

    assert main(["lora", "add", "style-a", str(loras["b"].path), "--model-repository", str(registry)]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["lora", "remove", "style-a", "--model-repository", str(registry)]) == 0
    assert main(["lora", "remove", "style-a", "--model-repository", str(registry)]) == 2
    assert "lora 'style-a' is not registered; no LoRA adapters are (add one: i2v lora add" in capsys.readouterr().err


def test_a_lora_for_another_architecture_is_refused_naming_the_first_keys(registry, tmp_path, capsys, loras):
    lora_registry.add(registry, "kept", loras["a"].path)
    other = tmp_path / "other.safetensors"
    save_file(
        {
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 320),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(320, 4),
            "unet.no_such_block.proj.lora_A.weight": torch.zeros(4, 8),
            "unet.no_such_block.proj.lora_B.weight": torch.zeros(8, 4),
        },
        str(other),
    )
    assert main(["lora", "add", "other", str(other), "--model-repository", str(registry)]) == 2
    error = capsys.readouterr().err
    assert "does not fit the served UNet: 2 of 2 layers do not match" in error
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight [4, 320]" in error
    assert "the UNet has no adaptable layer no_such_block.proj" in error
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    assert main(["lora", "add", "corrupt", str(corrupt), "--model-repository", str(registry)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    assert list(lora_registry.registered(lora_registry.lora_dir(registry))) == ["kept"]  # nothing disturbed
    assert read_lora(lora_registry.resolve(lora_registry.lora_dir(registry), "kept")).layers


def test_a_damaged_layer_map_refuses_registration_saying_export_again(tmp_path, capsys, loras):
    """The export's `lora_targets.json` is what `i2v lora add` checks a file against: damaged, the command says
    so and registers nothing."""
    repository = tmp_path / "repository"
    layer_map = repository / "unet" / "1" / LORA_TARGETS_FILE
    layer_map.parent.mkdir(parents=True)
    for damage in ("{not json", '{"down_blocks.0.proj": [4, 4]}'):
        layer_map.write_text(damage)
        assert main(["lora", "add", "a", str(loras["a"].path), "--model-repository", str(repository)]) == 2
        assert f"{layer_map} is damaged (not the export's layer map): export the model again" in capsys.readouterr().err
        assert not lora_registry.registered(lora_registry.lora_dir(repository))


def test_a_lora_on_a_layer_the_graph_runtime_cannot_adapt_is_refused_naming_the_torch_runtime(
    registry, tiny_pipeline, tmp_path, capsys
):
    """The tiny UNet's zero-initialised `temp_convs.*.conv4.3` share one graph weight, so the onnxruntime export
    leaves them out of its adaptable layers (docs/lora.md): the refusal says the layer exists, which runtime
    cannot adapt it and which can; the same file registers on a torch-runtime repository."""
    from i2v.export.repository import write_model_repository

    layer = "down_blocks.0.temp_convs.0.conv4.3"
    conv = MadeLora(tiny_pipeline.unet, tmp_path / "conv43.safetensors", seed=4, targets=[layer])
    assert main(["lora", "add", "conv", str(conv.path), "--model-repository", str(registry)]) == 2
    error = capsys.readouterr().err
    assert f"the UNet has layer {layer}, but this repository's onnxruntime runtime cannot adapt it" in error
    assert "the torch runtime adapts every linear and convolution layer" in error and "--runtime torch" in error
    assert "no adaptable layer" not in error
    torch_repository = write_model_repository(tiny_pipeline, None, tmp_path / "torch", source="tiny", runtime="torch")
    assert main(["lora", "add", "conv", str(conv.path), "--model-repository", str(torch_repository)]) == 0


def test_lora_remove_without_the_repository_says_so_as_add_does(loras, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(lora_registry.LORA_DIR_ENV, raising=False)
    (tmp_path / "empty").mkdir()
    for repository, message in ((tmp_path / "missing", "no model repository at"), (tmp_path / "empty", "no UNet")):
        assert main(["lora", "add", "style-a", str(loras["a"].path), "--model-repository", str(repository)]) == 2
        added = capsys.readouterr().err
        assert main(["lora", "remove", "style-a", "--model-repository", str(repository)]) == 2
        removed = capsys.readouterr().err
        assert removed == added and f"error: {message}" in removed and "not registered" not in removed


def test_graph_weights_are_mapped_to_unet_layers_transposed_for_matmul(model_repository):
    targets = lora_layer_map.read_targets(model_repository / "unet" / "1")
    to_q = targets["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"]
    assert len(to_q["initializers"]) == 1 and to_q["initializers"][0][1] is True  # folded W.T of a MatMul
    assert targets["conv_in"]["initializers"] == [["unet.conv_in.weight", False]]


# ---------------------------------------------------------------------------------------------------------
# Served: ONNX Runtime (the session server) and torch.


def test_served_lora_switches_per_request_and_equals_diffusers_with_peft(
    registry, client, loras, tiny_pipeline, photo, photo_png
):
    lora_registry.add(registry, "a", loras["a"].path)
    lora_registry.add(registry, "b", loras["b"].path)
    first_a = served(client, photo_png, lora="a")
    b = served(client, photo_png, lora="b", lora_scale=0.6)
    base = served(client, photo_png)
    second_a = served(client, photo_png, lora="a")

    assert_equal_video(first_a, reference(tiny_pipeline, photo, loras["a"].scaled(1.0)))
    assert_equal_video(b, reference(tiny_pipeline, photo, loras["b"].scaled(0.6)))
    assert_equal_video(base, reference(tiny_pipeline, photo))
    assert np.array_equal(first_a, second_a)  # nothing left over from b or the base model
    assert np.abs(first_a.astype(np.int16) - base).mean() > 2  # the adapter does change the video


def test_a_server_starts_on_a_repository_with_registered_loras(registry, loras, photo_png, tmp_path):
    """The registry lives in the model repository; Triton must not take it for a model (a folder at the
    repository's top level was polled as one and the server refused to start)."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    lora_registry.add(registry, "a", loras["a"].path)
    with (
        EmbeddedTritonServer(registry, log_file=tmp_path / "server.log") as server,
        I2VClient(server.endpoints.grpc_url) as restarted,
    ):
        assert served(restarted, photo_png, lora="a").shape == (8, 64, 64, 3)


def test_unknown_lora_is_an_invalid_input_listing_the_registered_ones(registry, client, loras, photo_png):
    lora_registry.add(registry, "a", loras["a"].path)
    with pytest.raises(InvalidInputError, match="lora 'nope' is not registered; registered: a"):
        served(client, photo_png, lora="nope")
    with pytest.raises(InvalidParameterError, match="lora_scale must be between 0 and 2, got 3"):  # client-side
        served(client, photo_png, lora="a", lora_scale=3.0)
    assert served(client, photo_png).shape == (8, 64, 64, 3)  # and the server keeps serving


def test_a_damaged_lora_copied_in_by_hand_is_an_invalid_input_saying_why(registry, client, loras, photo_png, tmp_path):
    """Files copied into the registry by hand skip `i2v lora add`'s check: the part finds out, and the request
    is refused in plain words (not "an internal error"); the server keeps serving."""
    folder = lora_registry.lora_dir(registry)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truncated.safetensors").write_bytes(loras["a"].path.read_bytes()[:300])
    with pytest.raises(InvalidInputError, match="the requested lora cannot be used: .*not a readable safetensors"):
        served(client, photo_png, lora="truncated")
    other = tmp_path / "other.safetensors"
    save_file(conv_in_pair(4) | {"unet.conv_out.lora_A.weight": torch.zeros(4, 7, 3, 3)}, str(other))
    shutil.copy(other, folder / "other-unet.safetensors")
    with pytest.raises(InvalidInputError, match="the requested lora cannot be used: .*conv_out"):
        served(client, photo_png, lora="other-unet")
    assert served(client, photo_png).shape == (8, 64, 64, 3)


def test_the_server_lists_its_adapters_to_the_client_and_the_cli(registry, client, triton, loras, capsys):
    """The listing model reads the registry per call: what `i2v lora add` described, a file copied in by hand as
    unchecked, nothing once removed."""
    url = triton.endpoints.grpc_url
    assert client.lora_adapters() == []
    assert main(["lora", "list", "--url", url]) == 0
    assert "no LoRA adapters registered" in capsys.readouterr().out
    lora_registry.add(registry, "style-b", loras["b"].path)
    shutil.copy(loras["a"].path, lora_registry.lora_dir(registry) / "by-hand.safetensors")
    by_hand, style_b = client.lora_adapters()
    assert (style_b.name, style_b.ranks, style_b.checked) == ("style-b", (2, 3, 6), True)
    assert {"to_q", "proj"} <= set(style_b.target_modules) and style_b.layers > 0 and style_b.size_bytes > 0
    assert (by_hand.name, by_hand.checked) == ("by-hand", False)
    assert main(["lora", "list", "--url", url]) == 0
    listed = capsys.readouterr().out
    assert "style-b" in listed and "rank 2-6" in listed and "by-hand" in listed and "unchecked" in listed
    lora_registry.remove(registry, "style-b")
    assert [a.name for a in client.lora_adapters()] == ["by-hand"]
    assert main(["lora", "list", "--url", "127.0.0.1:1"]) == EXIT_UNAVAILABLE  # no server there: said, no traceback
    assert "cannot connect to the server at 127.0.0.1:1" in capsys.readouterr().err


def test_a_unet_that_takes_no_lora_refuses_lora_requests_naming_the_export_option(
    registry, client, loras, photo_png, capsys
):
    """A UNet whose export wrote no lora_targets.json (Triton's TensorRT backend serving it) would ignore an
    adapter: the BLS refuses the request instead, and `i2v lora add` refuses to register one."""
    lora_registry.add(registry, "a", loras["a"].path)
    targets = registry / "unet" / "1" / LORA_TARGETS_FILE
    hidden = targets.with_name("hidden-targets.json")
    targets.rename(hidden)
    try:
        with pytest.raises(InvalidInputError, match="the served UNet takes no LoRA adapters.*--tensorrt-lora"):
            served(client, photo_png, lora="a")
        assert served(client, photo_png).shape == (8, 64, 64, 3)  # without a LoRA, served as before
        assert main(["lora", "add", "b", str(loras["b"].path), "--model-repository", str(registry)]) == 2
        assert "takes no LoRA adapters" in capsys.readouterr().err
    finally:
        hidden.rename(targets)


def test_a_tensorrt_engine_is_refitted_to_each_adapter_and_gets_the_previous_ones_layers_back(
    model_repository, loras, tmp_path
):
    """What a LoRA-ready TensorRT UNet is set to per request (`EngineRefits`; TensorRT's own refit is tested on a
    GPU): the adapter's merged weights, the graph's own weights for the layers the previous adapter changed and
    this one does not, and nothing when the engine holds the choice already; after a refit that failed part way,
    every layer either adapter touched."""
    import onnx
    from onnx import numpy_helper

    from i2v.serving.lora_runtime import AdapterFiles, EngineRefits, LoraChoice, MergedWeights

    folder = tmp_path / "registry"
    folder.mkdir()
    for name in ("a", "b"):
        shutil.copy(loras[name].path, folder / f"{name}.safetensors")
    version = model_repository / "unet" / "1"
    choice = {
        n: LoraChoice(n, lora_registry.file_version(folder / f"{n}.safetensors"), s)
        for n, s in (("a", 1.0), ("b", 0.6))
    }
    refits: list[dict] = []
    engine = EngineRefits(version, AdapterFiles(folder), refits.append)
    weights = MergedWeights(version)
    merged_a, merged_b = (
        weights.merged(read_lora(loras["a"].path), 1.0),
        weights.merged(read_lora(loras["b"].path), 0.6),
    )
    graph = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(version / "model.onnx")).graph.initializer}

    def assert_set_to(update: dict, expected: dict) -> None:
        assert update.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_array_equal(update[name], value)

    engine.select(choice["b"])
    assert_set_to(refits[-1], merged_b)
    engine.select(choice["b"])
    assert len(refits) == 1  # held already
    engine.select(choice["a"])
    only_b = merged_b.keys() - merged_a.keys()  # b also adapts proj and ff.net.2
    assert only_b
    assert_set_to(refits[-1], {**{n: graph[n] for n in only_b}, **merged_a})
    engine.select(None)
    assert_set_to(refits[-1], {n: graph[n] for n in merged_a})
    engine.select(None)
    assert len(refits) == 3

    def refused(update: dict) -> None:  # TensorRT refused part way: the engine holds some of b's weights
        raise RuntimeError("refit failed")

    engine.select(choice["a"])
    engine.refit = refused
    with pytest.raises(RuntimeError, match="refit failed"):
        engine.select(choice["b"])
    engine.refit = refits.append
    engine.select(choice["a"])  # not taken as held: a again, and the layers only b adapts back to the graph's
    assert_set_to(refits[-1], {**{n: graph[n] for n in only_b}, **merged_a})


def test_removing_a_lora_in_use_lets_its_request_finish_with_its_weights(
    registry, client, loras, tiny_pipeline, photo, photo_png
):
    lora_registry.add(registry, "going", loras["old"].path)
    removed = threading.Event()

    def remove_at_first_step(step: int, total: int) -> None:
        if not removed.is_set():
            lora_registry.remove(registry, "going")
            removed.set()

    result = client.generate(lora_request(photo_png, lora="going"), on_progress=remove_at_first_step)
    assert removed.is_set()
    assert_equal_video(result.frames, reference(tiny_pipeline, photo, loras["old"].scaled(1.0)))
    with pytest.raises(InvalidInputError, match="lora 'going' is not registered"):
        served(client, photo_png, lora="going")


def test_peft_adapters_set_each_choice_whatever_came_before(tiny_pipeline, loras, tmp_path):
    """The torch UNet's adapters skip setting what is set already: through scale changes, the base model,
    eviction (capacity 1) and a second injection, each call's output is that of a fresh UNet given only that
    choice."""
    import copy

    from i2v.model.modules import UNetPart
    from i2v.serving.lora_runtime import AdapterFiles, LoraChoice, PeftAdapters

    folder = tmp_path / "registry"
    folder.mkdir()
    for name in ("a", "b"):
        shutil.copy(loras[name].path, folder / f"{name}.safetensors")
    version = {n: lora_registry.file_version(folder / f"{n}.safetensors") for n in ("a", "b")}
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 2, 8, 8, generator=generator)
    inputs = (
        sample,
        torch.tensor([500.0]),
        torch.full((2,), 8.0),
        torch.randn(sample.shape, generator=generator),
        torch.randn(2, 1, tiny_pipeline.unet.config.cross_attention_dim, generator=generator),
        torch.randn(2, 77, tiny_pipeline.unet.config.cross_attention_dim, generator=generator),
    )

    def output(adapters: PeftAdapters, unet: UNetPart, choice: tuple[str, float] | None) -> torch.Tensor:
        adapters.select(None if choice is None else LoraChoice(choice[0], version[choice[0]], choice[1]))
        with torch.inference_mode():
            return unet(*inputs)

    served_unet = UNetPart(copy.deepcopy(tiny_pipeline.unet)).eval()
    served = PeftAdapters(served_unet.unet, AdapterFiles(folder), capacity=1)
    for choice in [None, ("a", 1.0), ("a", 1.0), ("a", 0.5), None, ("b", 1.5), ("a", 1.0), None, None]:
        fresh_unet = UNetPart(copy.deepcopy(tiny_pipeline.unet)).eval()
        expected = output(PeftAdapters(fresh_unet.unet, AdapterFiles(folder)), fresh_unet, choice)
        torch.testing.assert_close(output(served, served_unet, choice), expected, rtol=0, atol=0, msg=str(choice))
    assert len(served.injected) == 1
    assert served.layers and all(len(layer.lora_A) <= 1 for layer in served.layers)  # the evicted one is gone


def test_an_adapter_peft_cannot_load_is_taken_out_again(tiny_pipeline, tmp_path):
    """A file whose matrices do not fit the UNet (copied into the registry by hand): PEFT injects its layers, then
    refuses its weights. Nothing of it stays in the UNet: the adapter cache would never evict it."""
    import copy

    from i2v.model.lora import lora_targets
    from i2v.serving.lora_runtime import AdapterFiles, LoraChoice, PeftAdapters

    unet = copy.deepcopy(tiny_pipeline.unet)
    queries = [(m, shape) for m, shape in lora_targets(unet).items() if m.endswith("to_q") and len(shape) == 2]
    tensors = {}
    for index, (module, (rows, columns)) in enumerate(queries):
        tensors[f"unet.{module}.lora_A.weight"] = torch.randn(4, columns + (index == 1))  # one a column too wide
        tensors[f"unet.{module}.lora_B.weight"] = torch.randn(rows, 4)
    save_file(tensors, str(tmp_path / "wide.safetensors"))
    adapters = PeftAdapters(unet, AdapterFiles(tmp_path))
    choice = LoraChoice("wide", lora_registry.file_version(tmp_path / "wide.safetensors"), 1.0)
    for _ in range(2):  # a retry the same
        with pytest.raises(RuntimeError, match="size mismatch"):
            adapters.select(choice)
        assert not getattr(unet, "peft_config", {}) and not adapters.injected
        assert not any(layer.lora_A for layer in adapters.layers)


def test_torch_runtime_serves_the_lora_with_peft_equal_to_diffusers(
    torch_triton, loras, tiny_pipeline, photo, photo_png
):
    with (
        emptied_afterwards(torch_triton.model_repository) as repository,
        I2VClient(torch_triton.endpoints.grpc_url) as client,
    ):
        lora_registry.add(repository, "b", loras["b"].path)
        lora_registry.add(repository, "a", loras["a"].path)
        b = served(client, photo_png, lora="b", lora_scale=1.5)
        base = served(client, photo_png)
        a = served(client, photo_png, lora="a", lora_scale=0.5)
        b_again = served(client, photo_png, lora="b", lora_scale=1.5)
    assert_equal_video(b, reference(tiny_pipeline, photo, loras["b"].scaled(1.5)))
    assert_equal_video(base, reference(tiny_pipeline, photo))
    assert_equal_video(a, reference(tiny_pipeline, photo, loras["a"].scaled(0.5)))
    assert np.array_equal(b, b_again)


def test_lora_flags_come_from_the_parameter_table():
    from i2v.cli import build_parser
    from i2v.client.command import generation_values

    args = build_parser().parse_args(
        ["generate", "--image", "x.png", "--prompt", "p", "--lora", "a", "--lora-scale", "0.5"]
    )
    assert generation_values(args) == {"prompt": "p", "lora": "a", "lora_scale": 0.5}
