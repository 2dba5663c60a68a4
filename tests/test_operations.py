"""Operations on the real embedded server: auth, metrics, model control, request logs, crash and restart, soak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from i2v.client import GenerationRequest, I2VClient, ServerUnavailableError, UnauthorizedError
from i2v.serving.triton_server import EmbeddedTritonServer

KEY = "s3cret"


def small(photo_png, **params) -> GenerationRequest:
    defaults = {"prompt": "waves", "num_inference_steps": 10, "num_frames": 8, "height": 64, "width": 64}
    return GenerationRequest(image=photo_png, **{**defaults, **params})


@pytest.fixture(scope="module")
def ops_triton(model_repository, tmp_path_factory):
    """A server as deployed: an API key, a request log and stored outputs."""
    folder = tmp_path_factory.mktemp("ops")
    env = {"I2V_REQUEST_LOG": str(folder / "logs" / "requests.jsonl"), "I2V_OUTPUT_DIR": str(folder / "outputs")}
    with EmbeddedTritonServer(model_repository, api_key=KEY, env=env, log_file=folder / "server.log") as server:
        server.folder = folder
        yield server


def metrics(server) -> str:
    with urllib.request.urlopen(server.endpoints.metrics_url, timeout=10) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_health_and_metrics_are_open_while_inference_needs_the_key(ops_triton, photo_png):
    with urllib.request.urlopen(f"http://{ops_triton.endpoints.http_url}/v2/health/ready", timeout=10) as response:
        assert response.status == 200
    assert "nv_inference_count" in metrics(ops_triton)
    with I2VClient(ops_triton.endpoints.grpc_url) as client, pytest.raises(UnauthorizedError):
        client.generate(small(photo_png))
    with I2VClient(ops_triton.endpoints.grpc_url, api_key=KEY) as client:
        assert client.generate(small(photo_png)).video


def test_bls_metrics_count_requests_steps_stages_and_errors(ops_triton, photo_png):
    before = metrics(ops_triton)
    with I2VClient(ops_triton.endpoints.grpc_url, api_key=KEY) as client:
        client.generate(small(photo_png, num_inference_steps=12))
        with pytest.raises(Exception, match="invalid input"):
            client.generate(GenerationRequest(image=b"not an image", prompt="waves"))
    after = metrics(ops_triton)
    delta = {
        name: metric_value(after, name, **labels) - metric_value(before, name, **labels)
        for name, labels in [
            ("i2v_requests_total", {"outcome": "ok"}),
            ("i2v_denoise_steps_total", {}),
            ("i2v_request_errors_total", {"kind": "invalid_input"}),
        ]
    }
    assert delta == {"i2v_requests_total": 1, "i2v_denoise_steps_total": 12, "i2v_request_errors_total": 1}
    assert metric_value(after, "i2v_stage_seconds", stage="unet") > 0
    assert metric_value(after, "i2v_requests_in_flight") == 0
    # the dashboard's p50/p95 latency, as compose's and Kubernetes' servers export it
    assert metric_value(after, "nv_inference_request_summary_us_count", model="i2vgen_xl") >= 1


def test_every_request_is_logged_as_json_and_its_video_stored_under_a_generated_name(ops_triton, photo_png):
    with I2VClient(ops_triton.endpoints.grpc_url, api_key=KEY) as client:
        result = client.generate(small(photo_png, seed=77, prompt="../../etc/passwd"))
    records = [json.loads(line) for line in (ops_triton.folder / "logs" / "requests.jsonl").read_text().splitlines()]
    record = next(r for r in records if r.get("seed") == 77)
    assert record["outcome"] == "ok" and record["request_id"]
    assert record["parameters"]["prompt"] == "../../etc/passwd"
    assert record["timings"]["unet_total"] > 0
    stored = list((ops_triton.folder / "outputs").glob("*.mp4"))
    assert any(path.read_bytes() == result.video for path in stored)
    assert all(path.parent == ops_triton.folder / "outputs" for path in stored)


def i2v(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "i2v.cli", *args], capture_output=True, text=True, timeout=120)


def test_models_can_be_listed_unloaded_and_loaded_at_run_time_with_the_key(ops_triton, model_repository, photo_png):
    url = ops_triton.endpoints.grpc_url
    assert i2v("models", "list", "--url", url).returncode != 0  # model control needs the key
    listing = i2v("models", "list", "--url", url, "--api-key", KEY)
    assert listing.returncode == 0, listing.stderr
    assert all(f"{name}" in listing.stdout for name in ("i2vgen_xl", "unet", "vae_decoder"))

    assert i2v("models", "unload", "i2vgen_xl", "--url", url, "--api-key", KEY).returncode == 0
    with I2VClient(url, api_key=KEY) as client:
        with pytest.raises(ServerUnavailableError):
            client.generate(small(photo_png))
        # a new version of a part appears in the repository and is picked up without a restart
        (model_repository / "vae_decoder" / "2").symlink_to(model_repository / "vae_decoder" / "1")
        try:
            # the names after the options, as deploy/README.md writes it
            assert i2v("models", "load", "--url", url, "--api-key", KEY, "vae_decoder", "i2vgen_xl").returncode == 0
            listing = i2v("models", "list", "--url", url, "--api-key", KEY).stdout
            assert any(line.split()[:3] == ["vae_decoder", "2", "READY"] for line in listing.splitlines()), listing
            assert client.generate(small(photo_png)).video
        finally:
            (model_repository / "vae_decoder" / "2").unlink()
            i2v("models", "load", "vae_decoder", "--url", url, "--api-key", KEY)


def test_a_part_unloaded_under_the_pipeline_makes_requests_unavailable_naming_it(ops_triton, photo_png):
    """The BLS stays loaded while an operator unloads one of its parts: a request is then refused as unavailable
    (retryable, exit 3), naming the part and how to load it, not an internal error; loaded again, it serves."""
    url = ops_triton.endpoints.grpc_url
    unload = i2v("models", "unload", "vae_decoder", "--url", url, "--api-key", KEY)
    assert unload.returncode == 0 and unload.stdout == "unloaded vae_decoder\n", unload.stderr
    listing = i2v("models", "list", "vae_decoder", "--url", url, "--api-key", KEY).stdout
    assert listing.split()[2] == "UNAVAILABLE", listing  # done unloading when the command said so
    try:
        with I2VClient(url, api_key=KEY) as client:
            with pytest.raises(ServerUnavailableError) as refused:
                client.generate(small(photo_png))
            assert "the vae_decoder part is not loaded" in str(refused.value)
            assert "i2v models load vae_decoder" in str(refused.value)
            assert refused.value.retryable
    finally:
        assert i2v("models", "load", "vae_decoder", "--url", url, "--api-key", KEY).returncode == 0
    with I2VClient(url, api_key=KEY) as client:
        assert client.generate(small(photo_png)).video


def test_listing_named_models_only_lists_them_and_changes_nothing(ops_triton, photo_png):
    url = ops_triton.endpoints.grpc_url
    listing = i2v("models", "list", "i2vgen_xl", "unet", "--url", url, "--api-key", KEY)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert sorted(row[0] for row in rows) == ["i2vgen_xl", "unet"] and all(row[2] == "READY" for row in rows)
    with I2VClient(url, api_key=KEY) as client:
        client.wait_until_ready()  # still loaded: listing unloaded it once
        assert client.generate(small(photo_png)).video
    unknown = i2v("models", "list", "unet", "no_such_model", "--url", url, "--api-key", KEY)
    assert unknown.returncode == 2 and "not in the model repository: no_such_model" in unknown.stderr


def test_server_killed_mid_request_gives_unavailable_then_serves_after_restart(model_repository, tmp_path, photo_png):
    server = EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log")
    server.start()
    errors: list[Exception] = []
    try:
        with I2VClient(server.endpoints.grpc_url) as client:

            def kill_at_step_two(step, total):
                if step == 2:
                    os.killpg(server.pid, signal.SIGKILL)

            try:
                client.generate(small(photo_png, num_inference_steps=100), on_progress=kill_at_step_two)
            except Exception as exc:
                errors.append(exc)
        assert errors and isinstance(errors[0], ServerUnavailableError), errors
    finally:
        server.stop()
    restarted = EmbeddedTritonServer(model_repository, grpc_port=server.grpc_port, log_file=tmp_path / "again.log")
    with restarted, I2VClient(restarted.endpoints.grpc_url) as client:
        assert client.generate(small(photo_png)).video


def server_rss_mb(server) -> float:
    """Resident memory of the server and every process in its group (the Python stubs)."""
    pids = subprocess.run(["pgrep", "-g", str(server.pid)], capture_output=True, text=True).stdout.split()
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                total_kb += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration):
            pass
    return total_kb / 1024


def test_soak_of_200_small_requests_keeps_server_memory_bounded(triton, photo_png):
    threads, done = 2, []
    with I2VClient(triton.endpoints.grpc_url) as warm:
        warm.generate(small(photo_png))
    baseline = server_rss_mb(triton)

    def worker():
        with I2VClient(triton.endpoints.grpc_url) as client:
            for _ in range(100):
                done.append(len(client.generate(small(photo_png, num_frames=8)).video))

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=600)
    growth = server_rss_mb(triton) - baseline
    print(
        f"soak: {len(done)} requests in {time.monotonic() - start:.0f} s; "
        f"server RSS {baseline:.0f} MB -> {baseline + growth:.0f} MB ({growth:+.0f} MB)"
    )
    assert len(done) == 200 and all(done)
    assert growth < 150, f"server memory grew by {growth:.0f} MB over 200 requests"
