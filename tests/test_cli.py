"""The `i2v` command as a user runs it: a subprocess against the real server."""

from __future__ import annotations

import json
import subprocess
import sys

from i2v.client.command import EXIT_INVALID, EXIT_UNAVAILABLE
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


def test_generate_against_no_server_says_unavailable(tmp_path, photo_png):
    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    run = i2v(
        "generate", "--url", "127.0.0.1:1", "--image", str(image), "--prompt", "waves", "-o", str(tmp_path / "x.mp4")
    )
    assert run.returncode == EXIT_UNAVAILABLE
    assert "unreachable" in run.stderr


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
