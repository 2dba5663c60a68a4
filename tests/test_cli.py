"""The `i2v` command as a user runs it: a subprocess against the real server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from i2v.arguments import EXIT_CANCELLED, EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, EXIT_UNAVAILABLE
from i2v.cli import main
from i2v.video import decode_mp4


def i2v(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "i2v.cli", *args], capture_output=True, text=True, timeout=300)


def test_generate_writes_a_playable_mp4_and_its_metadata(triton, tmp_path, photo_png):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    out = tmp_path / "out" / "video.mp4"
    run = i2v(
        "generate",
        "--url",
        triton.endpoints.grpc_url,
        "--image",
        str(image),
        "--prompt",
        "waves",
        "--steps",
        "10",
        "--num-frames",
        "8",
        "--seed",
        "5",
        "-o",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    video = decode_mp4(out.read_bytes())
    assert video.frames.shape == (8, 64, 96, 3) and video.codec == "h264"
    metadata = json.loads(out.with_suffix(".json").read_text())
    assert metadata["seed"] == 5 and metadata["parameters"]["prompt"] == "waves"
    assert "10/10" in run.stderr  # the progress bar reached the last step


def test_generate_reports_invalid_input_with_its_exit_code(triton, tmp_path, photo_png):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    run = i2v(
        "generate",
        "--url",
        triton.endpoints.grpc_url,
        "--image",
        str(image),
        "--prompt",
        "waves",
        "--num-frames",
        "99",
        "-o",
        str(tmp_path / "x.mp4"),
    )
    assert run.returncode == EXIT_INVALID
    assert "num_frames must be between 8 and 32, got 99" in run.stderr


def test_an_image_the_server_refuses_draws_no_progress_bar_before_the_error(triton, tmp_path):
    """The image is checked on the server, before the first step: the error comes alone, no empty bar first."""
    image = tmp_path / "broken.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    run = i2v("generate", "--url", triton.endpoints.grpc_url, "--image", str(image), "--prompt", "waves")
    assert run.returncode == EXIT_INVALID, run.stderr
    assert run.stderr.startswith("error: invalid input: ") and "denoising" not in run.stderr, run.stderr


def test_the_server_s_invalid_input_is_said_once_with_the_served_model_s_size_step(triton, tmp_path, photo_png):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    for height in ("72", "100"):  # 72: a multiple of 8, 100: not; the tiny model's step is 16
        run = i2v("generate", "--url", triton.endpoints.grpc_url, "--image", str(image), "--prompt", "waves",
                  "--height", height, "-o", str(tmp_path / "x.mp4"))  # fmt: skip
        assert run.returncode == EXIT_INVALID
        assert f"error: invalid input: height must be a multiple of 16, got {height}\n" in run.stderr


def test_generate_against_no_server_says_it_cannot_connect(tmp_path, photo_png):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    run = i2v(
        "generate", "--url", "127.0.0.1:1", "--image", str(image), "--prompt", "waves", "-o", str(tmp_path / "x.mp4")
    )
    assert run.returncode == EXIT_UNAVAILABLE
    assert "error: cannot connect to the server at 127.0.0.1:1: is it running, and is the address right?" in (
        run.stderr
    )
    for command in (["models", "list"], ["lora", "list"]):  # every client command: the same words and exit code
        run = i2v(*command, "--url", "127.0.0.1:1")
        assert run.returncode == EXIT_UNAVAILABLE, command
        assert run.stderr.startswith("error: cannot connect to the server at 127.0.0.1:1: is it running"), command


def test_a_host_name_that_does_not_resolve_is_a_server_that_cannot_be_reached():
    """`.invalid` never resolves (RFC 2606): the same words and exit code as a port nobody listens on."""
    run = i2v("models", "list", "--url", "no-such-host.invalid:8001")
    assert run.returncode == EXIT_UNAVAILABLE, run.stderr
    assert run.stderr.startswith("error: cannot connect to the server at no-such-host.invalid:8001: is it running"), (
        run.stderr
    )


def test_an_unknown_option_is_refused_with_the_subcommand_usage(capsys):
    """Not the top-level usage (`i2v [-h] COMMAND ...`), which shows none of the subcommand's options."""
    for argv, command in (
        (["generate", "--image", "x.png", "--prompt", "x", "--bogus"], "i2v generate"),
        (["lora", "add", "name", "file.safetensors", "--bogus"], "i2v lora add"),
        (["serve", "--bogus"], "i2v serve"),
    ):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        error = capsys.readouterr().err
        assert refused.value.code == 2
        assert f"usage: {command} " in error and f"{command}: error: unrecognized arguments: --bogus" in error


def test_a_mistake_in_the_request_or_the_output_is_invalid_even_when_the_server_is_down(tmp_path, photo_png):
    """Checked before the server is contacted: exit 2 (fix the command), not 3 (retry later), no traceback."""
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    generate = ("generate", "--url", "127.0.0.1:1", "--image", str(image), "--prompt", "waves")
    run = i2v(*generate, "--num-frames", "40", "-o", str(tmp_path / "x.mp4"))
    assert run.returncode == EXIT_INVALID
    assert "error: invalid input: num_frames must be between 8 and 32, got 40" in run.stderr
    run = i2v(*generate, "-o", "/proc/nope/x.mp4")
    assert run.returncode == EXIT_INVALID and "Traceback" not in run.stderr
    assert "error: invalid input: -o /proc/nope/x.mp4 cannot be written: cannot make /proc/nope: No such file" in (
        run.stderr
    )
    run = i2v(*generate, "-o", "/proc/x.mp4")  # the folder is there, a file cannot be made in it
    assert run.returncode == EXIT_INVALID and "-o /proc/x.mp4 cannot be written: /proc: " in run.stderr
    run = i2v(*generate, "-o", f"{image}/x.mp4")
    assert run.returncode == EXIT_INVALID
    assert f"-o {image}/x.mp4 cannot be written: {image} is a file, not a folder" in run.stderr
    for timeout in ("0", "-1", "nan"):
        run = i2v(*generate, "--timeout", timeout, "-o", str(tmp_path / "x.mp4"))
        assert run.returncode == EXIT_INVALID and "argument --timeout: must be more than 0 seconds" in run.stderr


def test_the_demo_checks_its_parameters_before_exporting_or_starting_anything(tmp_path):
    run = i2v("demo", "--num-frames", "100", "--model-repository", str(tmp_path / "repository"))
    assert run.returncode == EXIT_INVALID and "Traceback" not in run.stderr
    assert "error: invalid input: num_frames must be between 8 and 32, got 100" in run.stderr
    assert not (tmp_path / "repository").exists()


@pytest.mark.parametrize("command", [["export", "--output", "repository"], ["demo"]])
def test_a_server_command_on_a_client_only_install_says_what_to_install(tmp_path, command):
    """`pip install i2v-serving` has no torch: these commands say which extra to install, not a traceback."""
    code = f"import sys; sys.modules['torch'] = None; from i2v.cli import main; sys.exit(main({command!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == EXIT_FAILED and "Traceback" not in run.stderr, run.stderr
    needs = "error: this command needs the package 'torch', which this install lacks: pip install 'i2v-serving[server]'"
    assert needs in run.stderr


def test_a_video_that_cannot_be_saved_is_kept_elsewhere_and_said_so(tmp_path):
    from i2v.client.command import OutputError, save_video
    from i2v.client.types import GenerationResult

    (tmp_path / "a-file").write_text("")
    result = GenerationResult(video=b"mp4 bytes", metadata={"seed": 1})
    target = tmp_path / "a-file" / "x.mp4"
    with pytest.raises(OutputError, match=f"^cannot write {target}: {target.parent}: File exists; the video") as e:
        save_video(result, target)
    kept = Path(str(e.value).split("the video was saved to ")[1].split(" ")[0])
    assert kept.read_bytes() == b"mp4 bytes" and json.loads(kept.with_suffix(".json").read_text()) == {"seed": 1}
    kept.unlink()
    kept.with_suffix(".json").unlink()


def test_a_timeout_says_so_with_its_own_exit_code(triton, tmp_path, photo_png):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    run = i2v("generate", "--url", triton.endpoints.grpc_url, "--image", str(image), "--prompt", "waves",
              "--steps", "100", "--timeout", "0.2", "-o", str(tmp_path / "x.mp4"))  # fmt: skip
    assert run.returncode == EXIT_TIMEOUT
    assert "error: the request took longer than --timeout 0.2 s and was cancelled" in run.stderr


def test_models_load_and_unload_refuse_a_name_not_in_the_repository(triton):
    for action in ("load", "unload", "list"):
        run = i2v("models", action, "nope", "--url", triton.endpoints.grpc_url)
        assert run.returncode == EXIT_INVALID, action
        assert run.stderr == "error: not in the model repository: nope\n" and run.stdout == "", action


def test_help_shows_defaults():
    run = i2v("serve", "--help")
    assert run.returncode == 0 and "(default: 8001)" in run.stdout


def test_batch_of_three_with_one_corrupt_image_writes_two_videos_and_a_manifest(triton, tmp_path, photo_png):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(photo_png)
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "c.png").write_bytes(photo_png)
    out = tmp_path / "videos"
    run = i2v(
        "generate",
        "--url",
        triton.endpoints.grpc_url,
        "--batch",
        str(folder),
        "--prompt",
        "waves",
        "--steps",
        "10",
        "--num-frames",
        "8",
        "--output-dir",
        str(out),
    )
    assert run.returncode == 1, run.stderr  # one item failed
    manifest = json.loads((out / "manifest.json").read_text())["items"]
    assert [(item["name"], item["status"]) for item in manifest] == [("a", "ok"), ("b", "failed"), ("c", "ok")]
    assert "image could not be decoded" in manifest[1]["error"]
    assert manifest[1]["error_type"] == "InvalidInputError"
    for item in (manifest[0], manifest[2]):
        assert decode_mp4((out / item["video"]).read_bytes()).frames.shape[0] == 8
        assert item["seed"] == item["metadata"]["seed"]


def test_every_bad_jsonl_line_is_a_failed_item_naming_its_line_and_the_run_goes_on(triton, tmp_path, photo_png):
    (tmp_path / "in.png").write_bytes(photo_png)
    good = json.dumps({"image": "in.png", "prompt": "waves", "num_frames": 8, "num_inference_steps": 10})
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(["[1, 2]", '{"image": 5}', "not json", good, '{"image": "in.png", "fps": 99}']) + "\n")
    run = i2v("generate", "--url", triton.endpoints.grpc_url, "--batch", str(jobs), "--prompt", "waves",
              "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert run.returncode == EXIT_FAILED and "Traceback" not in run.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["items"]
    assert [item["status"] for item in manifest] == ["failed", "failed", "failed", "ok", "failed"]
    assert manifest[0]["error"].startswith(f"{jobs}:1: expected a JSON object")
    assert manifest[1]["error"].startswith(f"{jobs}:2: 'image' must be the path of an image file, got 5")
    assert manifest[2]["error"].startswith(f"{jobs}:3: not JSON")
    assert manifest[4]["name"] == "0005-in" and manifest[4]["error"] == "fps must be between 4 and 24, got 99"
    assert {item["error_type"] for item in manifest if item["status"] == "failed"} == {"InvalidInputError"}
    assert f"failed: 0003: {jobs}:3: not JSON" in run.stderr


def test_batch_from_jsonl_sets_parameters_per_line(triton, tmp_path, photo_png):
    (tmp_path / "in.png").write_bytes(photo_png)
    lines = [
        {"image": "in.png", "prompt": "waves", "num_frames": 8, "seed": 1},
        {"image": "in.png", "prompt": "storm", "num_frames": 16, "seed": 2},
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    run = i2v(
        "generate",
        "--url",
        triton.endpoints.grpc_url,
        "--batch",
        str(jobs),
        "--steps",
        "10",
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["items"]
    assert [item["metadata"]["parameters"]["num_frames"] for item in manifest] == [8, 16]
    assert [item["metadata"]["parameters"]["prompt"] for item in manifest] == ["waves", "storm"]


def test_ctrl_c_cancels_the_request_on_the_server_and_exits_with_the_cancelled_code(triton, tmp_path, photo_png):
    """Ctrl-C during the progress bar: the server stops the request at its next step (not after the whole video),
    and the command says so with exit code 5, without a traceback."""
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    stops_before = triton.log_tail(2000).count("cancelled before step")
    command = [sys.executable, "-m", "i2v.cli", "generate", "--url", triton.endpoints.grpc_url, "--image", str(image),
               "--prompt", "waves", "--steps", "100", "--num-frames", "16", "-o", str(tmp_path / "x.mp4")]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    seen = bytearray()

    def read_stderr() -> None:
        for chunk in iter(lambda: os.read(process.stderr.fileno(), 1024), b""):
            seen.extend(chunk)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    deadline = time.monotonic() + 120
    while not re.search(rb"\b[2-9]/100\b", bytes(seen)):  # the progress bar at step 2 or later
        assert process.poll() is None and time.monotonic() < deadline, bytes(seen).decode()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == EXIT_CANCELLED
    reader.join(timeout=10)
    stderr = bytes(seen).decode()
    assert "error: cancelled (Ctrl-C): the server stops the request at its next step" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "x.mp4").exists()
    deadline = time.monotonic() + 30
    while triton.log_tail(2000).count("cancelled before step") == stops_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert triton.log_tail(2000).count("cancelled before step") == stops_before + 1, "the server went on generating"
