"""The client library against the real server: success, streaming, cancel, overload, auth, unreachable."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from i2v.arguments import EXIT_INVALID, EXIT_UNAUTHORIZED
from i2v.client import (
    AsyncI2VClient,
    GenerationCancelledError,
    GenerationRequest,
    GenerationResult,
    GenerationTimeoutError,
    I2VClient,
    I2VError,
    InvalidInputError,
    OverloadedError,
    Progress,
    ServedModel,
    ServerUnavailableError,
    UnauthorizedError,
    UnknownModelError,
)

PROMPT = "a lighthouse"


def small(photo_png, **params) -> GenerationRequest:
    return GenerationRequest(
        image=photo_png,
        prompt=PROMPT,
        **{"num_inference_steps": 10, "num_frames": 8, "height": 64, "width": 64, **params},
    )


def test_async_client_streams_progress_then_the_result(triton, photo_png):
    async def collect():
        async with AsyncI2VClient(triton.endpoints.grpc_url) as client:
            await client.wait_until_ready()
            return [event async for event in client.stream(small(photo_png, seed=3))]

    events = asyncio.run(collect())
    assert events[:-1] == [Progress(step, 10) for step in range(1, 11)]
    assert isinstance(events[-1], GenerationResult) and events[-1].seed == 3 and events[-1].video


def test_sync_and_async_clients_give_the_same_video(triton, client, photo_png):
    async def generate():
        async with AsyncI2VClient(triton.endpoints.grpc_url) as aio:
            return await aio.generate(small(photo_png, seed=11, return_frames=True))

    sync_frames = client.generate(small(photo_png, seed=11, return_frames=True)).frames
    assert (asyncio.run(generate()).frames == sync_frames).all()


def test_cancel_mid_run_stops_the_server_at_the_next_step_and_frees_it(triton, client, photo_png):
    steps_seen: list[int] = []

    def cancel_after_three(step, total):
        steps_seen.append(step)
        if step == 3:
            threading.Thread(target=client.cancel).start()

    with pytest.raises(GenerationCancelledError):
        client.generate(
            small(photo_png, num_inference_steps=100, num_frames=16, width=96), on_progress=cancel_after_three
        )
    assert max(steps_seen) < 100
    deadline = time.monotonic() + 30
    while "cancelled before step" not in triton.log_tail(200) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "cancelled before step" in triton.log_tail(200), "the server did not stop the cancelled request"
    assert client.generate(small(photo_png)).video  # the slot is free again


def test_async_cancel_by_leaving_the_stream(triton, photo_png):
    async def leave_early():
        async with AsyncI2VClient(triton.endpoints.grpc_url) as client:
            async for event in client.stream(small(photo_png, num_inference_steps=100)):
                if isinstance(event, Progress) and event.step == 2:
                    break
            return await client.generate(small(photo_png))

    assert asyncio.run(leave_early()).video


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+")
def test_asyncio_cancellation_stays_asyncio_s_own_and_stops_the_server(triton, photo_png):
    """asyncio.timeout and task.cancel() work as with any library: the task ends with asyncio's own
    cancellation (TimeoutError for the timeout), and the server stops the request at its next step."""
    long = small(photo_png, num_inference_steps=100, num_frames=16, width=96)
    stops_before = triton.log_tail(2000).count("cancelled before step")

    async def run():
        async with AsyncI2VClient(triton.endpoints.grpc_url) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.generate(long)
            task = asyncio.create_task(client.generate(long))
            await asyncio.sleep(1.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await client.generate(small(photo_png))  # the server is free again

    assert asyncio.run(run()).video
    deadline = time.monotonic() + 30
    while triton.log_tail(2000).count("cancelled before step") < stops_before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert triton.log_tail(2000).count("cancelled before step") >= stops_before + 2


def test_server_errors_are_classified_by_grpc_status_before_their_words():
    from tritonclient.utils import InferenceServerException

    from i2v.client import GenerationError, InvalidInputError
    from i2v.client.grpc_client import client_error

    def classify(message: str, status: str | None) -> type:
        return type(client_error(InferenceServerException(message, status=status)))

    # an internal failure whose message mentions "unavailable" is a failed generation, not a missing server
    assert classify("generation failed in the unet part: CUDA unavailable", "StatusCode.INTERNAL") is GenerationError
    assert classify("invalid input: num_frames must be between 8 and 32", "StatusCode.INVALID_ARGUMENT") is (
        InvalidInputError
    )
    assert classify("Exceeds maximum queue size", "StatusCode.UNAVAILABLE") is OverloadedError
    assert classify("failed to connect to all addresses", None) is ServerUnavailableError
    # Triton's words for a name it does not know (a typo: not retryable), and for a model it knows but has not
    # loaded (it may be loading: retryable)
    assert classify("Request for unknown model: 'nope' is not found", "StatusCode.NOT_FOUND") is UnknownModelError
    assert classify("Request for unknown model: 'nope' is not found", None) is UnknownModelError  # the stream's
    assert classify("Request for unknown model: 'unet' has no available versions", "StatusCode.NOT_FOUND") is (
        ServerUnavailableError
    )


def test_an_unknown_model_name_is_an_invalid_input_not_retryable(triton, photo_png):
    url = triton.endpoints.grpc_url
    with I2VClient(url, model_name="nope") as client:
        with pytest.raises(UnknownModelError, match=f"the server at {url} has no model 'nope'") as refused:
            client.wait_until_ready()
        assert isinstance(refused.value, InvalidInputError) and not refused.value.retryable
        with pytest.raises(UnknownModelError, match="has no model 'nope'"):
            client.generate(small(photo_png))

    async def generate():
        async with AsyncI2VClient(url, model_name="nope") as client:
            with pytest.raises(UnknownModelError, match="has no model 'nope'"):
                await client.wait_until_ready()
            await client.generate(small(photo_png))

    with pytest.raises(UnknownModelError, match="has no model 'nope'"):
        asyncio.run(generate())


def test_async_client_raises_the_sync_client_s_typed_errors(triton, photo_png):
    """gRPC's own errors of the asyncio stream (AioRpcError) go through the same mapping as the sync client's."""

    async def generate(url: str, request: GenerationRequest) -> None:
        async with AsyncI2VClient(url, timeout_s=0.3) as client:
            await client.generate(request)

    long = small(photo_png, num_inference_steps=100, num_frames=16, width=96)
    for url, request, error in (
        ("127.0.0.1:1", small(photo_png), ServerUnavailableError),
        (triton.endpoints.grpc_url, long, GenerationTimeoutError),
    ):
        with pytest.raises(error) as async_error:
            asyncio.run(generate(url, request))
        with I2VClient(url, timeout_s=0.3) as client, pytest.raises(error):
            client.generate(request)
        if error is ServerUnavailableError:
            assert str(async_error.value).startswith("cannot connect to the server at 127.0.0.1:1")


def test_client_side_checks_raise_invalid_input_naming_the_parameter_before_contacting_the_server(photo_png):
    too_long = "num_frames must be between 8 and 32, got 40"
    with I2VClient("127.0.0.1:1") as client, pytest.raises(InvalidInputError, match=too_long) as refused:
        client.generate(GenerationRequest(photo_png, "x", num_frames=40))  # no server: the check comes first
    assert isinstance(refused.value, I2VError) and not refused.value.retryable
    with pytest.raises(InvalidInputError, match="unknown parameter 'num_frame'"):
        GenerationRequest(photo_png, "x", num_frame=16)
    with pytest.raises(InvalidInputError, match="the image /nope.png cannot be read: No such file or directory"):
        GenerationRequest.from_file("/nope.png", "x")

    async def generate():
        async with AsyncI2VClient("127.0.0.1:1") as client:
            await client.generate(GenerationRequest(photo_png, "x", num_frames=40))

    with pytest.raises(InvalidInputError, match=too_long):
        asyncio.run(generate())


def test_the_size_step_is_the_served_model_s_read_from_its_config(triton, client, photo_png):
    """The served config publishes the size step (16 for the tiny model, not a client's guess): a request checked
    with it is refused before anything is sent; one sent unchecked, by the server, in the same words."""
    assert client.size_step() == 16
    served = asyncio.run(_async_served_model(triton.endpoints.grpc_url))  # the UI's one read at page open
    assert served.size_step == 16 and served.defaults == client.model_defaults()
    assert small(photo_png, height=100).validate().height == 100  # no step given: not checked here
    with pytest.raises(InvalidInputError, match="height must be a multiple of 16, got 100"):
        small(photo_png, height=100).validate(client.size_step())
    with pytest.raises(InvalidInputError, match="height must be a multiple of 16, got 100"):
        client.generate(small(photo_png, height=100))


async def _async_served_model(url: str) -> ServedModel:
    async with AsyncI2VClient(url) as client:
        return await client.served_model()


def test_served_model_defaults_are_read_from_the_server(client):
    defaults = client.model_defaults()
    assert (defaults["height"], defaults["width"], defaults["num_inference_steps"]) == (64, 96, 25)  # the tiny model's
    assert defaults["guidance_scale"] == 9.0 and defaults["negative_prompt"] == "" and "seed" not in defaults


def test_timeout_raises_its_own_error(triton, photo_png):
    with I2VClient(triton.endpoints.grpc_url, timeout_s=0.5) as client, pytest.raises(GenerationTimeoutError):
        client.generate(small(photo_png, num_inference_steps=100, num_frames=16, width=96))


def test_overloaded_server_refuses_the_excess_at_once_and_serves_the_rest(triton, photo_png):
    """Queue of 4: of 15 requests sent at once, some are refused immediately, the rest complete.

    At least the queue's 4 are served; whether a fifth is depends on the burst reaching Triton before or after its
    scheduler hands the first request to the instance.
    """
    outcomes: list[object] = []

    def one():
        with I2VClient(triton.endpoints.grpc_url) as client:
            start = time.monotonic()
            try:
                client.generate(small(photo_png, num_inference_steps=25, num_frames=16, width=96))
                outcomes.append("ok")
            except OverloadedError as exc:
                outcomes.append((exc, time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(15)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    refused = [o for o in outcomes if o != "ok"]
    assert len(outcomes) == 15
    assert refused, "no request was refused"
    assert all("Exceeds maximum queue size" in str(exc) for exc, _ in refused)
    assert outcomes.count("ok") >= 4  # a full queue


def test_unreachable_server_raises_unavailable_saying_it_cannot_connect():
    plain = r"^cannot connect to the server at 127.0.0.1:1: is it running, and is the address right\? \(gRPC: "
    with I2VClient("127.0.0.1:1") as client:
        with pytest.raises(ServerUnavailableError, match=plain) as refused:
            client.wait_until_ready()
        assert "Connection refused" in str(refused.value) and refused.value.retryable
        with pytest.raises(ServerUnavailableError, match=plain):
            client.generate(GenerationRequest(image=b"x", prompt=PROMPT))


def test_a_missing_ca_file_is_an_invalid_input_not_a_traceback(tmp_path, capsys):
    from i2v.cli import main
    from i2v.client import InvalidInputError

    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(InvalidInputError, match=f"CA file {missing} cannot be read"):
        I2VClient("127.0.0.1:1", ca_file=str(missing))
    with pytest.raises(InvalidInputError, match="cannot be read"):
        AsyncI2VClient("127.0.0.1:1", ca_file=str(missing))
    assert main(["lora", "list", "--url", "127.0.0.1:1", "--ca-file", str(missing)]) == EXIT_INVALID
    assert f"CA file {missing} cannot be read" in capsys.readouterr().err


def test_a_malformed_lora_listing_is_a_generation_error_naming_it():
    """What the server's listing model answers, parsed: a damaged answer is the client's typed error."""
    import json

    import numpy as np

    from i2v.client import GenerationError
    from i2v.client.grpc_client import parse_lora_listing

    class Answer:  # the one method of tritonclient's InferResult the parser reads
        def __init__(self, text: str | None) -> None:
            self.text = text

        def as_numpy(self, name: str):
            return None if self.text is None else np.array([self.text.encode()], dtype=np.object_)

    good = [{"name": "a", "size_bytes": 10, "ranks": [4], "layers": 2, "target_modules": ["to_q"], "checked": True}]
    assert [a.rank_text for a in parse_lora_listing(Answer(json.dumps(good)))] == ["4"]
    entries = [{"name": "a"}, [{"size_bytes": 1}], [{"name": "a", "ranks": ["x"]}], [{"name": "a", "size_bytes": "b"}]]
    for damaged in (None, "not json", *(json.dumps(entry) for entry in entries)):
        with pytest.raises(GenerationError, match="the server's LoRA listing is malformed"):
            parse_lora_listing(Answer(damaged))


@pytest.fixture(scope="module")
def keyed_triton(model_repository, tmp_path_factory):
    from i2v.serving.triton_server import EmbeddedTritonServer

    with EmbeddedTritonServer(
        model_repository, api_key="s3cret", log_file=tmp_path_factory.mktemp("keyed") / "server.log"
    ) as server:
        yield server


@pytest.mark.parametrize("key", [None, "wrong"])
def test_missing_or_wrong_key_is_unauthorized(keyed_triton, photo_png, key):
    with I2VClient(keyed_triton.endpoints.grpc_url, api_key=key) as client:
        client.wait_until_ready()  # health stays open
        with pytest.raises(UnauthorizedError, match="restricted"):
            client.generate(small(photo_png))

    async def generate():
        async with AsyncI2VClient(keyed_triton.endpoints.grpc_url, api_key=key, timeout_s=30) as client:
            await client.generate(small(photo_png))

    with pytest.raises(UnauthorizedError, match="restricted"):
        asyncio.run(generate())


@pytest.mark.parametrize(
    ("key", "says"),
    [(None, "needs an API key: pass it with --api-key KEY or"), ("wrong", "refused the API key sent: check --api-key")],
)
def test_the_command_line_says_how_to_pass_the_key_with_its_own_exit_code(
    keyed_triton, photo_png, tmp_path, capsys, monkeypatch, key, says
):
    from i2v.cli import main

    monkeypatch.delenv("I2V_API_KEY", raising=False)
    (tmp_path / "in.png").write_bytes(photo_png)
    url = keyed_triton.endpoints.grpc_url
    keyed = ["--url", url] + (["--api-key", key] if key else [])
    generate = ["generate", "--image", str(tmp_path / "in.png"), "--prompt", "x", "-o", str(tmp_path / "o.mp4")]
    for argv in (generate, ["models", "list"], ["lora", "list"]):
        assert main([*argv, *keyed]) == EXIT_UNAUTHORIZED, argv
        error = capsys.readouterr().err
        assert f"error: the server at {url} {says}" in error and "I2V_API_KEY" in error


def test_right_key_is_served(keyed_triton, photo_png):
    with I2VClient(keyed_triton.endpoints.grpc_url, api_key="s3cret") as client:
        assert client.generate(small(photo_png)).video


def test_client_import_does_not_pull_torch():
    code = "import sys, i2v.client, i2v.client.grpc_client, i2v.client.aio_client; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_base_install_does_not_depend_on_torch():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert not any(dep.split("[")[0].split(">")[0].split("=")[0].strip() == "torch" for dep in project["dependencies"])
