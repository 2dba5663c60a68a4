"""`i2v export` refuses what it cannot do before any work starts (loading, exporting, building engines take
minutes), naming the option and what it takes, with no traceback."""

from __future__ import annotations

import pytest

from i2v.cli import build_parser, main
from i2v.export.profiles import TINY_SUPPORTED_SHAPES


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--max-queue-size", "0"], "--max-queue-size: expected a whole number of at least 1, got '0'"),
        (["--max-frames", "4", "--runtime", "tensorrt"], "--max-frames: must be between 8 and 32"),
        (["--max-frames", "100", "--runtime", "tensorrt"], "--max-frames: must be between 8 and 32"),
        (["--gpu-memory-budget", "-5"], "--gpu-memory-budget: must be more than 0 GiB"),
        (["--resolutions", "0x-64", "--runtime", "tensorrt"], "--resolutions: 0x-64: height must be between 64"),
    ],
    ids=["queue 0", "4 frames", "100 frames", "negative budget", "negative size"],
)
def test_a_bad_option_value_is_refused_while_parsing(options, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["export", *options])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_a_bad_output_or_model_is_refused_before_the_export(tmp_path, capsys):
    a_file = tmp_path / "repository"
    a_file.write_text("not a folder")
    assert main(["export", "--output", str(a_file)]) == 1
    assert f"--output {a_file} is a file" in capsys.readouterr().err
    assert a_file.read_text() == "not a folder"
    assert main(["export", "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "r")]) == 1
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "weights").mkdir()
    assert main(["export", "--model", str(tmp_path / "weights"), "--output", str(tmp_path / "r")]) == 1
    assert "is not a diffusers pipeline folder (no model_index.json)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_frames_alone_narrow_the_models_own_tensorrt_table():
    """--max-frames without --resolutions keeps the model's resolutions (the tiny model's, not the presets)."""
    from i2v.export.command import _supported_shapes

    args = build_parser().parse_args(["export", "--runtime", "tensorrt", "--max-frames", "16"])
    shapes = _supported_shapes(args)
    assert shapes.resolutions == TINY_SUPPORTED_SHAPES.resolutions and shapes.num_frames == (8, 16)


def test_tensorrt_options_are_refused_for_another_runtime(tmp_path, capsys):
    """Given with another runtime they would change nothing: said at once, as --torch-compile is for onnxruntime."""
    options = ["--engine-check", "none", "--context-allocation", "on-profile-change"]
    assert main(["export", *options, "--output", str(tmp_path / "r")]) == 1
    error = capsys.readouterr().err
    assert "--engine-check and --context-allocation are options of the tensorrt runtime, not of onnxruntime" in error
    assert not (tmp_path / "r").exists()


def test_the_export_side_imports_without_transformers_torchvision_notice():
    """Without torchvision transformers uses its PIL image processor (as tested here) and warns at every start;
    `i2v` drops that one warning (i2v/__init__.py), whatever is imported first."""
    import subprocess
    import sys
    from importlib.util import find_spec

    if find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: transformers has no fallback to announce")
    for module in ("i2v.export.sources", "i2v.serving.generator"):
        run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "torchvision" not in run.stderr, run.stderr
