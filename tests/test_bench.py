"""`i2v bench` on the tiny model: a two-point grid gives well-formed JSON, a markdown table and plots.

No timing asserts: speed is judged from committed results, not from test thresholds.
"""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from i2v.benchmarks import measure
from i2v.benchmarks.report import baseline_of
from i2v.cli import main

RUNNERS = ("served-onnxruntime", "onnxruntime", "torch", "diffusers")


@pytest.fixture(scope="module")
def results(tiny_dir, model_repository, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    code = main(
        [
            "bench",
            "--model",
            str(tiny_dir),
            "--model-repository",
            str(model_repository),
            "--grid",
            "64x64x8,64x96x16",
            "--steps",
            "10",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--concurrency",
            "2",
            "--device",
            "cpu",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    return output


def test_one_row_per_point_and_runner_with_positive_figures(results):
    result = json.loads((results / "results.json").read_text())
    rows = result["rows"]
    assert [(r["runner"], r["height"], r["width"], r["frames"], r["steps"]) for r in rows] == [
        (runner, h, w, f, 10) for h, w, f in ((64, 64, 8), (64, 96, 16)) for runner in RUNNERS
    ]
    for row in rows:
        assert row["median_s"] > 0 and row["p90_s"] >= row["median_s"] and row["peak_rss_mb"] > 100
        assert row["peak_gpu_mb"] is None  # no GPU here: nothing is made up
    for row in rows:
        if row["runner"] != "diffusers":  # the served path and the in-process loop report their stages
            assert row["stages"]["unet_per_step"] > 0 and row["unet_tflops_per_s"] > 0
    served = [r for r in rows if r["runner"] == "served-onnxruntime"]
    assert all(r["stages"]["vae_decoder"] > 0 for r in served)
    # Triton's counters: the UNet's time inside its model per call, within the BLS's step (one call a step)
    assert all(0 < r["stages"]["unet_model_per_call"] < r["stages"]["unet_per_step"] for r in served)
    assert all(r["stages"]["mp4_encode"] > 0 for r in rows)  # each runner ends with the MP4 the server returns
    assert result["throughput"]["requests_per_s"] > 0 and result["throughput"]["runner"] == "served-onnxruntime"
    assert set(result["unet_tflops_per_step"]) == {"64x64x8", "64x96x16"}
    assert all(v > 0 for v in result["unet_tflops_per_step"].values())
    assert {"date", "cpu", "cpu_cores", "packages"} <= result["machine"].keys()
    assert result["settings"]["served_runtimes"] == ["onnxruntime"]


def test_markdown_table_compares_each_row_with_its_baselines(results):
    table = (results / "results.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| 64x")]
    assert len(lines) == 8
    served = next(line for line in lines if "served-onnxruntime" in line)
    # served over in-process onnxruntime, and over diffusers: two numbers, not dashes
    cells = [c.strip() for c in served.split("|")]
    assert float(cells[9]) > 0 and float(cells[10]) > 0
    split = re.search(r"64x96x16 served-onnxruntime (\d\.\d{4}) \+ (\d\.\d{4})", table)  # in the call + between
    assert split and float(split[1]) > 0 and float(split[2]) > 0, table[-400:]
    assert baseline_of("served-torch") == "torch" and baseline_of("diffusers") == ""


def test_plots_are_written(results):
    for name in ("latency.png", "memory.png"):
        with Image.open(results / name) as image:
            assert image.size[0] > 400


def test_full_size_unet_flops_are_counted_on_the_meta_device():
    from i2v.export.sources import full_size_configs

    tflops = measure.unet_flops_per_step(full_size_configs()["unet"], 512, 512, 16) / 1e12
    assert 30 < tflops < 60  # 41.9 TFLOPs per guided step at 512x512x16 (measured)


def test_gpu_peaks_are_looked_up_by_the_name_torch_reports():
    assert measure.gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert measure.gpu_peak_tflops("NVIDIA L40S") == 362.1  # not L4's
    assert measure.gpu_peak_tflops("Some Future GPU") is None
    assert measure.gpu_peak_tflops(None) is None


def test_a_running_server_is_measured_through_its_url(tiny_dir, triton, tmp_path):
    code = main(
        [
            "bench",
            "--model",
            str(tiny_dir),
            "--url",
            triton.endpoints.grpc_url,
            "--served-runtimes",
            "onnxruntime",
            "--runners",
            "served",
            "--grid",
            "64x64x8",
            "--steps",
            "10",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--concurrency",
            "0",
            "--device",
            "cpu",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 0
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert row["runner"] == "served-onnxruntime" and row["stages"]["unet_per_step"] > 0
    assert not list(tmp_path.glob("model_repository-*"))  # nothing exported: the server was already there


def test_tensorrt_is_not_served_by_the_embedded_server(tiny_dir, tmp_path):
    with pytest.raises(SystemExit, match="no TensorRT backend.*--url"):
        main(
            [
                "bench",
                "--model",
                str(tiny_dir),
                "--served-runtimes",
                "tensorrt",
                "--device",
                "cpu",
                "--output",
                str(tmp_path),
            ]
        )


def test_gpu_suite_dry_run_on_the_cpu_runs_every_runner_of_the_gpu_proof(tmp_path):
    """`i2v bench --suite gpu --device cpu`: the GPU proof's runners (served torch runtime, the loop eager and
    compiled, diffusers) on the tiny model, as CI can run it."""
    code = main(["bench", "--suite", "gpu", "--device", "cpu", "--output", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "results.json").read_text())
    runners = ["served-torch", "torch", "torch-synced", "torch-compile", "diffusers"]
    assert [r["runner"] for r in result["rows"]] == runners
    assert result["settings"]["model"] == "tiny" and result["settings"]["grid"] == "64x64x8"
    assert "step × in-process" in (tmp_path / "results.md").read_text()
    # the UNet's call alone, served (Triton's counters) and synchronised in-process, within each step
    for row in (r for r in result["rows"] if r["runner"] in ("served-torch", "torch-synced")):
        assert 0 < row["stages"]["unet_model_per_call"] < row["stages"]["unet_per_step"], row


def test_a_served_torch_variant_pairs_with_the_in_process_runner_of_its_name(tmp_path):
    """`--served-runtimes torch-cuda-graphs`: the torch runtime exported with its UNet in CUDA graphs (on a CPU
    it runs eagerly) is the row served-torch-cuda-graphs, compared with the in-process torch-cuda-graphs."""
    args = ["bench", "--device", "cpu", "--grid", "64x64x8", "--repeats", "1", "--warmup", "0"]
    args += ["--runners", "served,torch-cuda-graphs", "--served-runtimes", "torch-cuda-graphs", "--concurrency", "0"]
    assert main([*args, "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert [r["runner"] for r in result["rows"]] == ["served-torch-cuda-graphs", "torch-cuda-graphs"]
    served_row = (tmp_path / "results.md").read_text().split("served-torch-cuda-graphs |")[1].split("\n")[0]
    in_process_ratio, step_ratio = served_row.split("|")[4:6]
    assert in_process_ratio.strip() != "–" and step_ratio.strip() != "–"
    config = (tmp_path / "model_repository-torch-cuda-graphs" / "unet" / "config.pbtxt").read_text()
    assert '"TORCH_COMPILE", value: { string_value: "cuda-graphs" }' in config


def test_an_unknown_served_runtime_is_refused_naming_the_choices(tmp_path):
    args = ["bench", "--device", "cpu", "--runners", "served", "--served-runtimes", "torch-synced"]
    with pytest.raises(
        SystemExit, match=r"unknown served runtimes \['torch-synced'\]; choose from onnxruntime, torch, "
    ):
        main([*args, "--output", str(tmp_path)])


def test_appended_runs_keep_the_other_points_rows_in_grid_order():
    from i2v.benchmarks.report import merge_results

    def result(grid: str, rows: list[tuple]) -> dict:
        return {
            "settings": {"grid": grid, "model": "m", "device": "cuda"},
            "unet_tflops_per_step": {f"{h}x{w}x{f}": 1.0 for h, w, f, _ in rows},
            "rows": [{"height": h, "width": w, "frames": f, "steps": 25, "runner": r} for h, w, f, r in rows],
        }

    first = result("512x512x16", [(512, 512, 16, "torch"), (512, 512, 16, "diffusers")])
    second = result("768x768x16", [(768, 768, 16, "torch"), (768, 768, 16, "diffusers")])
    again = result("512x512x16", [(512, 512, 16, "torch")])
    merged = merge_results(merge_results(first, second), again)
    assert [(r["height"], r["runner"]) for r in merged["rows"]] == [
        (512, "diffusers"),
        (512, "torch"),
        (768, "torch"),
        (768, "diffusers"),
    ]
    assert merged["settings"]["grid"] == "512x512x16,768x768x16"
    assert set(merged["unet_tflops_per_step"]) == {"512x512x16", "768x768x16"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "64x64"], "argument --grid: expected HEIGHTxWIDTHxFRAMES points, comma-separated, such as"),
        (["--grid", "64x6ax8"], "argument --grid: expected HEIGHTxWIDTHxFRAMES .* got '64x6ax8'"),
        (["--grid", "60x60x8"], "argument --grid: 60x60x8: height must be between 64 and 1280, got 60"),
        (["--grid", "64x64x4"], "argument --grid: 64x64x4: num_frames must be between 8 and 32, got 4"),
        (["--steps", "abc"], "argument --steps: expected denoising step counts, comma-separated, each 10 to 100"),
        (["--repeats", "0"], "argument --repeats: expected a whole number of at least 1, got '0'"),
        (["--warmup", "-1"], "argument --warmup: expected a whole number of at least 0, got '-1'"),
        # parsed, then checked against the model's configs before anything is exported or loaded
        (["--grid", "64x64x8,72x64x8"], r"argument --grid: 72x64x8: height must be a multiple of 16 \(the size step"),
    ],
    ids=["two numbers", "not a number", "height below the table", "frames below the table", "steps not a number",
         "no repeats", "negative warm-up", "not the model's size step"],
)  # fmt: skip
def test_bad_arguments_are_refused_naming_the_flag_before_any_work(tiny_dir, tmp_path, capsys, arguments, message):
    output = tmp_path / "results"
    with pytest.raises(SystemExit) as refused:
        main(["bench", "--model", str(tiny_dir), "--device", "cpu", "--output", str(output), *arguments])
    assert refused.value.code == 2
    assert re.search(f"i2v bench: error: {message}", capsys.readouterr().err)
    assert not output.exists()


def test_lora_suite_refuses_the_options_it_does_not_take(tmp_path, capsys):
    args = ["bench", "--suite", "lora", "--grid", "64x64x8", "--runners", "torch", "--device", "cuda"]
    with pytest.raises(SystemExit) as refused:
        main([*args, "--output", str(tmp_path / "results")])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert "--suite lora measures the UNet part's LoRA swaps on the CPU" in error
    assert "it takes --model and --output, not --grid, --runners, --device cuda" in error
    assert not (tmp_path / "results").exists()


def test_lora_suite_writes_its_results_to_the_output_folder(tiny_dir, tmp_path):
    assert main(["bench", "--suite", "lora", "--model", str(tiny_dir), "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result["runtimes"]) == {"onnxruntime", "torch"}
    assert all(r["step_s"] > 0 for r in result["runtimes"].values())
    assert result["settings"]["suite"] == "lora" and {"date", "cpu"} <= result["machine"].keys()
    table = (tmp_path / "results.md").read_text()
    assert "| onnxruntime |" in table and "| torch |" in table
