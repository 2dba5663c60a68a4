"""The gateway for real: Debian's nginx (with its njs module) on loopback, TLS on, in front of the embedded
Triton with its own key. Tenants generate over gRPC and curl, unknown keys and bursts are refused at the
proxy with typed errors, a reload changes tenants without dropping a stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from ports import free_port

from i2v.client import (
    AsyncI2VClient,
    ConnectionSettingsError,
    ForbiddenError,
    GenerationCancelledError,
    GenerationRequest,
    I2VClient,
    InvalidInputError,
    Progress,
    RateLimitedError,
    UnauthorizedError,
)
from i2v.gateway.nginx_config import GatewaySettings, render
from i2v.gateway.nginx_server import GatewayError, NginxGateway, find_nginx
from i2v.gateway.tenants import (
    Tenant,
    TenantsFileError,
    add_tenant,
    key_hash,
    load_tenants,
    new_key,
    remove_tenant,
)
from i2v.params import MODELS_HEADER, TENANT_HEADER
from i2v.video import decode_mp4

TRITON_KEY = "triton-own-key-never-given-out"
KEYS = {"alice": "alice-key-1", "bob": "bob-key-2", "carol": "carol-key-3", "dan": "dan-key-4"}
CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
MTAIL = shutil.which("mtail")


def _nginx_missing() -> str | None:
    try:
        find_nginx()
    except GatewayError as exc:
        return str(exc)
    return None if OPENSSL else "openssl is not installed (it makes the test certificate)"


needs_nginx = pytest.mark.skipif(_nginx_missing() is not None, reason=f"{_nginx_missing()}")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
needs_mtail = pytest.mark.skipif(MTAIL is None, reason="mtail is not installed (Debian: apt-get install mtail)")


def tenants() -> list[Tenant]:
    return [
        Tenant("alice", key_hash(KEYS["alice"]), requests_per_minute=600, burst=50, max_streams=2),
        Tenant("bob", key_hash(KEYS["bob"]), requests_per_minute=1, burst=0, max_streams=1),
        Tenant("carol", key_hash(KEYS["carol"]), requests_per_minute=600, burst=50, max_streams=1),
        Tenant("dan", key_hash(KEYS["dan"]), requests_per_minute=600, burst=50, models=("other_model",)),
    ]


def small(photo_png: bytes, **params) -> GenerationRequest:
    return GenerationRequest(
        image=photo_png,
        prompt="a lighthouse",
        **{"num_inference_steps": 10, "num_frames": 8, "height": 64, "width": 64, **params},
    )


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, made for this run only."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "gateway.pem", folder / "gateway-key.pem"
    subprocess.run(
        [OPENSSL or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def keyed_triton(model_repository, tmp_path_factory):
    """Triton with its own key on inference and model control: only the gateway holds it."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    folder = tmp_path_factory.mktemp("keyed-triton")
    requests = {"I2V_REQUEST_LOG": str(folder / "requests.jsonl")}  # the BLS's request log, one JSON line each
    with EmbeddedTritonServer(
        model_repository, log_file=folder / "server.log", api_key=TRITON_KEY, env=requests
    ) as server:
        yield server


def settings_for(triton, test_ca) -> GatewaySettings:
    return GatewaySettings(
        metrics_address=f"127.0.0.1:{free_port()}",  # mtail's UDP input (`tenant_metrics`)
        triton_grpc=triton.endpoints.grpc_url,
        triton_http=triton.endpoints.http_url,
        triton_api_key=TRITON_KEY,
        grpc_listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{free_port()}",
        tls_cert=str(test_ca[0]),
        tls_key=str(test_ca[1]),
        streams_retry_after_s=45,
    )


@pytest.fixture(scope="module")
def gateway(keyed_triton, test_ca, tmp_path_factory):
    if _nginx_missing():
        pytest.skip(_nginx_missing())
    with NginxGateway(tenants(), settings_for(keyed_triton, test_ca), tmp_path_factory.mktemp("gateway")) as gw:
        yield gw


@pytest.fixture(scope="module")
def tenant_metrics(gateway):
    """mtail on the gateway's access log (its syslog lines, over UDP), with the program the gateway rendered."""
    if MTAIL is None:
        pytest.skip("mtail is not installed")
    port = free_port()
    process = subprocess.Popen(
        [MTAIL, "--progs", str(gateway.folder), "--logs", f"udp://{gateway.settings.metrics_address}",
         "--address", "127.0.0.1", "--port", str(port), "--logtostderr"],
        stdout=subprocess.DEVNULL, stderr=open(gateway.folder / "mtail.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (gateway.folder / "mtail.log").read_text()
            time.sleep(0.1)
    # nginx sent lines to the port before mtail listened: the kernel's "connection refused" for them costs the
    # next line (nginx logs the error); a health check's line, which mtail does not count, pays it
    ready = ssl.create_default_context(cafile=str(gateway.settings.tls_cert))
    urllib.request.urlopen(f"{gateway.http_url}/v2/health/ready", timeout=10, context=ready).read()
    yield url
    process.terminate()
    process.wait(10)


def counters(url: str) -> dict[tuple, float]:
    """mtail's i2v_gateway_* samples: (name, sorted labels without mtail's `prog`) -> value."""
    samples = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        match = re.match(r"^(i2v_gateway_\w+)\{(.*)\} (\S+)$", line)
        if match:
            labels = tuple(sorted((k, v) for k, v in re.findall(r'(\w+)="([^"]*)"', match[2]) if k != "prog"))
            samples[(match[1], labels)] = float(match[3])
    return samples


def client_for(gateway, test_ca, tenant: str | None = "alice", **settings) -> I2VClient:
    return I2VClient(gateway.grpc_url, api_key=KEYS.get(tenant, tenant), ca_file=str(test_ca[0]), **settings)


def access_log(gateway) -> list[dict]:
    return [json.loads(line) for line in gateway.access_log.read_text().splitlines()]


def logged(gateway, timeout_s: float = 10, **expected) -> dict:
    """The access log's newest line once it has the `expected` fields: nginx writes a request's line when it is
    done with the request, which for a refused body can come after the client already has its answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = access_log(gateway)
        if lines and all(lines[-1].get(name) == value for name, value in expected.items()):
            return lines[-1]
        assert time.monotonic() < deadline, f"no access log line with {expected}; the last: {lines[-1:]}"
        time.sleep(0.05)


def curl(gateway, test_ca, path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CURL, "-sS", "-N", "--cacert", str(test_ca[0]), *args, f"{gateway.http_url}{path}"],
        capture_output=True, check=False, timeout=120,
    )  # fmt: skip


def sse_events(stdout: bytes) -> list[dict]:
    return [json.loads(line[5:]) for line in stdout.decode().splitlines() if line.startswith("data:")]


# -- tenants file and rendering (no server) -------------------------------------------------------------------


def test_add_tenant_returns_a_new_key_and_stores_only_its_hash(tmp_path):
    path = tmp_path / "tenants.json"
    key = add_tenant(path, "alice", requests_per_minute=12)
    assert key not in path.read_text() and key_hash(key) in path.read_text()
    assert load_tenants(path) == [Tenant("alice", key_hash(key), requests_per_minute=12)]
    assert add_tenant(path, "bob") != key
    # never read as an option: `i2v generate --api-key "$KEY"` (1 in 64 URL-safe keys began with "-")
    assert not any(new_key().startswith("-") for _ in range(1000))
    remove_tenant(path, "alice")
    assert [t.name for t in load_tenants(path)] == ["bob"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "Alice!", "key_sha256": "0" * 64}, "name must match"),
        ({"name": "alice", "key_sha256": "secret"}, "key_sha256 must be 64 lower-case hex digits"),
        ({"name": "alice", "key_sha256": "0" * 64, "requests_per_minute": 0}, "requests_per_minute must be an integer"),
        ({"name": "alice", "key_sha256": "0" * 64, "key": "x"}, "unknown fields key"),
    ],
)  # fmt: skip
def test_a_bad_tenants_file_is_refused_naming_the_tenant_and_field(tmp_path, entry, message):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [entry]}))
    with pytest.raises(TenantsFileError, match=message):
        load_tenants(path)


def test_a_tenants_file_that_cannot_be_read_or_written_is_refused_saying_so(tmp_path, capsys):
    from i2v.cli import main

    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TenantsFileError, match="is not a UTF-8 text file"):
        load_tenants(binary)
    with pytest.raises(TenantsFileError, match="cannot read the tenants file"):
        load_tenants(tmp_path)  # a folder
    spelled = tmp_path / "spelled.json"
    spelled.write_text(json.dumps({"tenants": [{"name": "alice", "key_sha256": "0" * 64, "models": "i2vgen_xl"}]}))
    with pytest.raises(TenantsFileError, match="models must be a list of model names, got 'i2vgen_xl'"):
        load_tenants(spelled)  # not ('i', '2', 'v', ...)
    assert main(["gateway", "add-tenant", "--tenants", str(tmp_path / "no" / "such" / "t.json"), "erin"]) == 2
    assert "cannot write the tenants file" in capsys.readouterr().err
    tenants_file = tmp_path / "tenants.json"
    add_tenant(tenants_file, "erin")
    output = tmp_path / "a-file"
    output.write_text("")
    assert main(["gateway", "render", "--tenants", str(tenants_file), "--output", str(output)]) == 2
    assert "cannot write the gateway's configuration into" in capsys.readouterr().err


def test_two_tenants_with_one_key_are_refused(tmp_path):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [{"name": n, "key_sha256": "a" * 64} for n in ("ann", "ben")]}))
    with pytest.raises(TenantsFileError, match="distinct key_sha256s; repeated: ann, ben"):
        load_tenants(path)


def test_the_rendered_config_holds_key_hashes_not_keys():
    text = render(tenants(), GatewaySettings("127.0.0.1:1", "127.0.0.1:2", triton_api_key=TRITON_KEY))
    assert key_hash(KEYS["alice"]) in text and KEYS["alice"] not in text
    assert "rate=1r/m" in text and "limit_conn streams_bob 1;" in text
    with pytest.raises(ValueError, match="TLS needs both a certificate and its key"):
        render([], GatewaySettings("127.0.0.1:1", "127.0.0.1:2", tls_cert="/x.pem"))
    with pytest.raises(ValueError, match="access_log must be an absolute path"):  # nginx would read it from its -p
        render([], GatewaySettings("127.0.0.1:1", "127.0.0.1:2", access_log="access.log"))


def test_cli_adds_a_tenant_and_renders_a_private_config(tmp_path, capsys):
    from i2v.cli import main

    tenants_file = tmp_path / "tenants.json"
    assert main(["gateway", "add-tenant", "--tenants", str(tenants_file), "dave", "--requests-per-minute", "5"]) == 0
    key = capsys.readouterr().out.splitlines()[-1]
    assert load_tenants(tenants_file)[0].key_sha256 == key_hash(key)
    output, bodies = tmp_path / "rendered", tmp_path / "bodies"
    render = ["gateway", "render", "--tenants", str(tenants_file), "--output", str(output), "--api-key", TRITON_KEY]
    assert main([*render, "--temp-dir", str(bodies)]) == 0
    assert stat.S_IMODE((output / "nginx.conf").stat().st_mode) == 0o600
    # nginx refuses to start without its temp folder: render makes it, and the config names it
    assert bodies.is_dir() and f"{bodies}/client_body" in (output / "nginx.conf").read_text()
    assert main(["gateway", "remove-tenant", "--tenants", str(tenants_file), "erin"]) == 2
    assert "no tenant 'erin'" in capsys.readouterr().err
    assert main(["gateway", "remove-tenant", "--tenants", str(tenants_file), "dave"]) == 0
    assert main(["gateway", "remove-tenant", "--tenants", str(tenants_file), "dave"]) == 2
    assert "tenants: none (add one: i2v gateway add-tenant NAME)" in capsys.readouterr().err


@needs_nginx
def test_render_makes_relative_paths_absolute_so_nginx_finds_them_from_its_prefix(
    tmp_path, test_ca, monkeypatch, capsys
):
    """nginx reads a relative path against its prefix (`-p`, the rendered folder), not where render ran."""
    from i2v.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tls").mkdir()
    shutil.copy(test_ca[0], "tls/tls.crt")
    shutil.copy(test_ca[1], "tls/tls.key")
    add_tenant(tmp_path / "tenants.json", "erin")
    argv = ["gateway", "render", "--tenants", "tenants.json", "--output", "gw", "--tls-cert", "tls/tls.crt",
            "--tls-key", "tls/tls.key", "--access-log", "access.log", "--pid-file", "nginx.pid", "--temp-dir", "bodies",
            "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    text = (tmp_path / "gw" / "nginx.conf").read_text()
    for line in (f"ssl_certificate {tmp_path}/tls/tls.crt;", f"ssl_certificate_key {tmp_path}/tls/tls.key;",
                 f"access_log {tmp_path}/access.log tenants;", f"pid {tmp_path}/nginx.pid;",
                 f"client_body_temp_path {tmp_path}/bodies/client_body;"):  # fmt: skip
        assert line in text
    monkeypatch.chdir("/")  # nginx runs from anywhere: it reads the certificate and writes its logs where render meant
    nginx, _ = find_nginx()
    tested = subprocess.run([nginx, "-t", "-p", str(tmp_path / "gw"), "-c", str(tmp_path / "gw" / "nginx.conf"),
                             "-e", "stderr"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert tested.returncode == 0, tested.stderr
    assert (tmp_path / "bodies").is_dir() and (tmp_path / "access.log").is_file()


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("tls/missing.crt", "tls/tls.key", "--tls-cert tls/missing.crt: cannot read {tmp}/tls/missing.crt"),
        ("tls/tls.crt", "{tmp}/tls/missing.key", "--tls-key {tmp}/tls/missing.key: cannot read {tmp}/tls/missing.key"),
        ("tls", "tls/tls.key", "--tls-cert tls: cannot read {tmp}/tls: Is a directory"),
    ],
)  # fmt: skip
def test_render_refuses_a_tls_file_it_cannot_read_naming_the_flag(tmp_path, monkeypatch, capsys, cert, key, message):
    from i2v.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "tls.crt").write_text("certificate")
    (tmp_path / "tls" / "tls.key").write_text("key")
    add_tenant(tmp_path / "tenants.json", "erin")
    tls = ["--tls-cert", cert.format(tmp=tmp_path), "--tls-key", key.format(tmp=tmp_path)]
    assert main(["gateway", "render", "--tenants", "tenants.json", "--output", "gw", *tls]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "gw").exists()


def test_render_leaves_a_tls_folder_absent_here_to_the_container_that_mounts_it(tmp_path, capsys):
    """Compose and Kubernetes render in one container and mount the TLS folder in nginx's only: render says it
    cannot check the files, and writes their paths as given."""
    from i2v.cli import main

    add_tenant(tmp_path / "tenants.json", "erin")
    elsewhere = "/nonexistent-i2v-gateway-tls"
    tls = ["--tls-cert", f"{elsewhere}/tls.crt", "--tls-key", f"{elsewhere}/tls.key"]
    assert main(["gateway", "render", "--tenants", str(tmp_path / "tenants.json"), "--output", str(tmp_path / "gw"),
                 "--temp-dir", str(tmp_path / "bodies"), *tls]) == 0  # fmt: skip
    assert f"--tls-cert {elsewhere}/tls.crt is not on this machine" in capsys.readouterr().err
    assert f"ssl_certificate {elsewhere}/tls.crt;" in (tmp_path / "gw" / "nginx.conf").read_text()


# -- through the real nginx ----------------------------------------------------------------------------------


@needs_nginx
def test_a_tenant_generates_over_grpc_through_the_gateway_with_streamed_progress(
    gateway, keyed_triton, test_ca, photo_png
):
    seen: list[tuple[int, int]] = []
    with client_for(gateway, test_ca) as client:
        client.wait_until_ready()
        result = client.generate(small(photo_png, seed=5), on_progress=lambda step, total: seen.append((step, total)))
    assert seen == [(step, 10) for step in range(1, 11)]
    assert decode_mp4(result.video).frames.shape == (8, 64, 64, 3) and result.seed == 5
    # the tenant is in nginx's access log and in the BLS's request log (Triton never sees the tenant's key)
    assert any(
        r["tenant"] == "alice" and r["uri"].endswith("ModelStreamInfer") and r["status"] == 200
        for r in access_log(gateway)
    )
    requests = Path(keyed_triton.env["I2V_REQUEST_LOG"]).read_text().splitlines()
    assert any(json.loads(line)["tenant"] == "alice" and json.loads(line)["seed"] == 5 for line in requests)


@needs_nginx
@pytest.mark.parametrize("key", ["not-a-tenant-key", None, TRITON_KEY])
def test_an_unknown_or_missing_key_is_refused_at_the_gateway(gateway, test_ca, photo_png, key):
    with (
        client_for(gateway, test_ca, tenant=key) as client,
        pytest.raises(UnauthorizedError, match="missing or unknown api key"),
    ):
        client.generate(small(photo_png))
    logged(gateway, grpc_status="16", tenant="")


@needs_nginx
def test_cancel_through_the_gateway_stops_the_server_at_the_next_step(gateway, keyed_triton, test_ca, photo_png):
    stops_before = keyed_triton.log_tail(2000).count("cancelled before step")
    steps: list[int] = []
    with client_for(gateway, test_ca) as client:

        def cancel_after_three(step, total):
            steps.append(step)
            if step == 3:
                threading.Thread(target=client.cancel).start()

        with pytest.raises(GenerationCancelledError):
            client.generate(
                small(photo_png, num_inference_steps=100, num_frames=16, width=96), on_progress=cancel_after_three
            )
        assert max(steps) < 100
        deadline = time.monotonic() + 30
        while (
            keyed_triton.log_tail(2000).count("cancelled before step") <= stops_before and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert keyed_triton.log_tail(2000).count("cancelled before step") > stops_before
        assert client.generate(small(photo_png)).video  # served again


@needs_nginx
def test_a_burst_over_the_rate_is_refused_with_when_to_retry_while_others_are_served(
    gateway, test_ca, photo_png, tmp_path
):
    with client_for(gateway, test_ca, "bob") as bob, client_for(gateway, test_ca, "alice") as alice:
        assert bob.generate(small(photo_png)).video  # bob: 1 request per minute, no burst
        with pytest.raises(RateLimitedError, match="tenant bob may send 1 requests per minute") as refused:
            bob.generate(small(photo_png))
        assert refused.value.retry_after_s == 60 and refused.value.retryable
        assert alice.generate(small(photo_png)).video  # other tenants are served meanwhile
    bobs = [r for r in access_log(gateway) if r["tenant"] == "bob"]
    assert (bobs[-1]["limit_req"], bobs[-1]["refusal"]) == ("REJECTED", "rate_limited")
    # the command line says so with its own exit code
    from i2v.arguments import EXIT_RATE_LIMITED
    from i2v.cli import main

    image = tmp_path / "in.png"
    image.write_bytes(photo_png)
    argv = ["generate", "--image", str(image), "--prompt", "x", "--url", gateway.grpc_url, "--api-key", KEYS["bob"],
            "--ca-file", str(test_ca[0]), "-o", str(tmp_path / "out.mp4"), "--steps", "10"]  # fmt: skip
    assert main(argv) == EXIT_RATE_LIMITED


@contextlib.contextmanager
def stream_running(gateway, test_ca, photo_png, tenant: str):
    """One long generation of `tenant` in flight (its first step done) for the block; it must end with its video."""
    started = threading.Event()
    outcome: list[object] = []

    def long_run():
        with client_for(gateway, test_ca, tenant) as client:
            try:
                client.generate(
                    small(photo_png, num_inference_steps=60, num_frames=16), on_progress=lambda s, t: started.set()
                )
                outcome.append("video")
            except Exception as exc:  # reported below
                outcome.append(exc)

    runner = threading.Thread(target=long_run)
    runner.start()
    try:
        assert started.wait(60)
        yield
    finally:
        runner.join(120)  # a later test of `tenant` finds its streams free
    assert outcome == ["video"]


def refused_as_over_streams(gateway, test_ca, photo_png, tenant: str) -> RateLimitedError:
    """A second generation of `tenant` while its one stream is open: the streams limit's refusal."""
    with client_for(gateway, test_ca, tenant) as second, pytest.raises(RateLimitedError) as refused:
        second.generate(small(photo_png))
    assert f"streams limit: tenant {tenant} may have" in str(refused.value)
    assert "1 concurrent streams" in str(refused.value)
    return refused.value


@needs_nginx
def test_streams_over_a_tenants_limit_are_refused_while_its_stream_runs(gateway, test_ca, photo_png):
    with stream_running(gateway, test_ca, photo_png, "carol"):
        refused = refused_as_over_streams(gateway, test_ca, photo_png, "carol")
        # the streams limit, not the rate: retry when a video may have ended (`streams_retry_after_s`), not in 1 s
        assert refused.retry_after_s == 45
        logged(gateway, tenant="carol", refusal="streams_limited", grpc_status="8")
        if CURL:  # over HTTP too, with the same wait in its Retry-After header
            run = curl(gateway, test_ca, "/v2/models/i2vgen_xl/generate_stream", "-H", f"api-key: {KEYS['carol']}",
                       "-D", "-", "--data-binary", "{}")  # fmt: skip
            answer = run.stdout.decode()
            assert answer.startswith("HTTP/1.1 429") and re.search(r"(?im)^retry-after: 45\r?$", answer), answer
            assert "streams limit: tenant carol" in answer


@needs_nginx
def test_a_tenant_with_one_stream_generates_back_to_back_with_the_asyncio_client(gateway, test_ca, photo_png):
    """Each video's stream has ended at the gateway when `AsyncI2VClient` hands the video over, so the next
    request of a tenant limited to one stream is never refused as over it (it was, now and then, when the client
    reset the stream right after the video)."""

    async def back_to_back() -> list[int]:
        settings = {"api_key": KEYS["carol"], "ca_file": str(test_ca[0])}
        async with AsyncI2VClient(gateway.grpc_url, **settings) as client:
            return [len((await client.generate(small(photo_png))).video) for _ in range(6)]

    assert all(asyncio.run(back_to_back()))


@needs_nginx
def test_a_tenant_lists_its_lora_adapters_while_its_streams_are_all_open(gateway, test_ca, photo_png):
    """A unary inference call (the LoRA list, which the UI reads while a video runs) counts against the tenant's
    rate, never its streams: those are the generations in flight."""
    with stream_running(gateway, test_ca, photo_png, "carol"):
        with client_for(gateway, test_ca, "carol") as client:
            assert isinstance(client.lora_adapters(), list)
        logged(gateway, tenant="carol", status=200, refusal="", uri="/inference.GRPCInferenceService/ModelInfer")
        if CURL:  # and over HTTP, Triton's unary `infer`
            run = curl(gateway, test_ca, "/v2/models/i2vgen_xl_loras/infer", "-H", f"api-key: {KEYS['carol']}",
                       "-w", "%{http_code}", "--data-binary", '{"inputs": []}')  # fmt: skip
            assert run.stdout.decode().endswith("200"), run.stdout
        refused_as_over_streams(gateway, test_ca, photo_png, "carol")  # its second generation is still refused


@needs_nginx
def test_tls_handshake_needs_the_test_ca_and_a_mismatch_says_which_option(gateway, keyed_triton, test_ca):
    """A TLS setting that does not fit the port is not "unavailable, retry": the error names the option to change."""
    with client_for(gateway, test_ca) as client:
        client.wait_until_ready()  # the test CA verifies the gateway's certificate
    untrusting = I2VClient(gateway.grpc_url, api_key=KEYS["alice"], tls=True)  # the system's CAs only
    with untrusting, pytest.raises(ConnectionSettingsError, match="does not trust: pass its CA with --ca-file"):
        untrusting.wait_until_ready()
    plaintext = I2VClient(gateway.grpc_url, api_key=KEYS["alice"])
    with plaintext, pytest.raises(ConnectionSettingsError, match="a TLS port .* needs --tls"):
        plaintext.wait_until_ready()
    to_plain = I2VClient(keyed_triton.endpoints.grpc_url, tls=True)
    with to_plain, pytest.raises(ConnectionSettingsError, match="does not speak TLS: leave out --tls"):
        to_plain.wait_until_ready()


@needs_nginx
@needs_curl
def test_curl_gets_progress_events_and_a_playable_mp4(gateway, test_ca, photo_png, tmp_path):
    body = tmp_path / "request.json"
    body.write_text(json.dumps({
        "image": "data:image/png;base64," + base64.b64encode(photo_png).decode(), "encoding": "base64",
        "prompt": "a lighthouse", "num_inference_steps": 10, "num_frames": 8, "height": 64, "width": 64, "seed": 9,
    }))  # fmt: skip
    run = curl(
        gateway, test_ca, "/v2/models/i2vgen_xl/generate_stream", "-H", f"api-key: {KEYS['alice']}", "-d", f"@{body}"
    )
    events = sse_events(run.stdout)
    assert [e["progress"] for e in events[:-1]] == [[step, 10] for step in range(1, 11)]
    video = decode_mp4(base64.b64decode(events[-1]["video"]))
    assert video.frames.shape == (8, 64, 64, 3) and json.loads(events[-1]["metadata"])["seed"] == 9
    # the README's one-liner
    if shutil.which("jq"):
        out = tmp_path / "cat.mp4"
        line = (
            f"curl -sN --cacert {test_ca[0]} -H 'api-key: {KEYS['alice']}' -d @{body} "
            f"{gateway.http_url}/v2/models/i2vgen_xl/generate_stream | sed -n 's/^data: //p' "
            f"| jq -r 'select(.video) | .video' | base64 -d > {out}"
        )
        subprocess.run(["bash", "-o", "pipefail", "-c", line], check=True, timeout=120)
        assert decode_mp4(out.read_bytes()).frames.shape == (8, 64, 64, 3)


@needs_nginx
@needs_curl
def test_curl_gets_the_same_parameter_errors_as_grpc(gateway, test_ca, photo_png, tmp_path):
    body = {"image": base64.b64encode(photo_png).decode(), "encoding": "base64", "prompt": "x", "num_frames": 40}

    def stream(body: dict):
        """alice's generate_stream over curl."""
        path = "/v2/models/i2vgen_xl/generate_stream"
        return curl(gateway, test_ca, path, "-H", f"api-key: {KEYS['alice']}", "-d", json.dumps(body))

    run = stream(body)
    assert sse_events(run.stdout) == [{"error": "invalid input: num_frames must be between 8 and 32, got 40"}]
    body.update(num_frames=8, image="not base64!")
    run = stream(body)
    assert "image is not valid base64" in sse_events(run.stdout)[0]["error"]
    refused = curl(
        gateway, test_ca, "/v2/models/i2vgen_xl/generate_stream", "-w", "%{http_code}", "-d", json.dumps(body)
    )
    assert refused.stdout.decode().endswith("401") and b"missing or unknown api key" in refused.stdout


@needs_nginx
@needs_curl
def test_a_50_mb_body_is_refused_at_the_gateway(gateway, keyed_triton, test_ca, tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as out:
        out.write(b'{"prompt": "x", "image": "')
        out.write(b"A" * (50 * 1024 * 1024))
        out.write(b'"}')
    run = curl(gateway, test_ca, "/v2/models/i2vgen_xl/generate_stream", "-H", f"api-key: {KEYS['alice']}",
               "-w", "%{http_code}", "--data-binary", f"@{big}")  # fmt: skip
    assert run.stdout.decode().endswith("413") and b"larger than the gateway's limit" in run.stdout
    logged(gateway, status=413)


@needs_nginx
def test_a_tenant_may_use_only_its_models_over_grpc_whatever_headers_it_sends(
    gateway, keyed_triton, test_ca, photo_png
):
    """gRPC names the model inside the message, so the models check it against the tenant's list, which nginx
    sends in a header of its own (a client's forged one is replaced)."""
    with client_for(gateway, test_ca, "dan") as dan:
        with pytest.raises(ForbiddenError, match="tenant dan may not use model i2vgen_xl; its models: other_model"):
            dan.generate(small(photo_png))
        dan.headers = {**dan.headers, MODELS_HEADER: "i2vgen_xl", TENANT_HEADER: "alice"}
        with pytest.raises(ForbiddenError, match="tenant dan may not use model i2vgen_xl"):
            dan.generate(small(photo_png))
    with client_for(gateway, test_ca, "alice") as alice:
        assert isinstance(alice.lora_adapters(), list)  # the LoRA list comes with i2vgen_xl
        with pytest.raises(ForbiddenError, match="tenant alice may not use model text_encoder"):  # a part, directly
            tokens = grpcclient.InferInput("input_ids", [1, 77], "INT64")
            tokens.set_data_from_numpy(np.zeros((1, 77), dtype=np.int64))
            alice._call(alice._client.infer, "text_encoder", inputs=[tokens])
        assert alice.generate(small(photo_png)).video  # its own model, as before
    logged = [json.loads(line) for line in Path(keyed_triton.env["I2V_REQUEST_LOG"]).read_text().splitlines()]
    assert any(r["tenant"] == "dan" and r["outcome"] == "forbidden" for r in logged)


@needs_nginx
def test_a_50_mb_grpc_request_is_refused_at_the_gateway(gateway, test_ca):
    with (
        client_for(gateway, test_ca) as client,
        pytest.raises(InvalidInputError, match="larger than the gateway's limit"),
    ):
        client.generate(GenerationRequest(image=b"\x89PNG" + bytes(50 * 1024 * 1024), prompt="too big"))
    logged(gateway, grpc_status="3", tenant="alice", refusal="too_large")


@needs_nginx
@needs_mtail
@needs_curl
def test_per_tenant_requests_and_refusals_are_prometheus_counters(
    gateway, tenant_metrics, test_ca, photo_png, tmp_path
):
    before = counters(tenant_metrics)
    with client_for(gateway, test_ca, "carol") as carol:
        assert carol.generate(small(photo_png)).video
    with client_for(gateway, test_ca, "not-a-key") as stranger, pytest.raises(UnauthorizedError):
        stranger.generate(small(photo_png))
    ready = ssl.create_default_context(cafile=str(test_ca[0]))
    urllib.request.urlopen(f"{gateway.http_url}/v2/health/ready", timeout=10, context=ready).read()  # not counted
    with client_for(gateway, test_ca, "bob") as bob:  # 1 request a minute: the second is refused at the latest
        with contextlib.suppress(RateLimitedError):
            bob.generate(small(photo_png))
        with pytest.raises(RateLimitedError):
            bob.generate(small(photo_png))
    big = tmp_path / "big.json"
    big.write_bytes(b'{"image": "' + b"A" * (33 * 1024 * 1024) + b'"}')
    run = curl(gateway, test_ca, "/v2/models/i2vgen_xl/generate_stream", "-H", f"api-key: {KEYS['alice']}",
               "-w", "%{http_code}", "--data-binary", f"@{big}")  # fmt: skip
    assert run.stdout.decode().endswith("413")
    run = curl(gateway, test_ca, "/v2/models/i2vgen_xl/config", "-H", f"api-key: {KEYS['dan']}", "-w", "%{http_code}")
    assert run.stdout.decode().endswith("403")  # the same words as the models' refusal over gRPC
    assert "forbidden: tenant dan may not use model i2vgen_xl; its models: other_model" in run.stdout.decode()

    expected = {
        ("i2v_gateway_requests_total", (("code", "0"), ("protocol", "grpc"), ("tenant", "carol"))): 1,
        ("i2v_gateway_refusals_total", (("reason", "unauthenticated"), ("tenant", "-"))): 1,
        ("i2v_gateway_refusals_total", (("reason", "rate_limited"), ("tenant", "bob"))): 1,
        ("i2v_gateway_refusals_total", (("reason", "too_large"), ("tenant", "alice"))): 1,
        ("i2v_gateway_refusals_total", (("reason", "forbidden"), ("tenant", "dan"))): 1,
        ("i2v_gateway_requests_total", (("code", "413"), ("protocol", "http"), ("tenant", "alice"))): 1,
    }
    deadline = time.monotonic() + 10
    while True:  # mtail counts the lines as the datagrams arrive
        after = counters(tenant_metrics)
        grown = {key: after.get(key, 0) - before.get(key, 0) for key in expected}
        if all(grown[key] >= n for key, n in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(grown[key] >= n for key, n in expected.items()), grown
    assert grown[("i2v_gateway_refusals_total", (("reason", "unauthenticated"), ("tenant", "-")))] == 1  # no health
    seconds = ("i2v_gateway_request_seconds_total", (("protocol", "grpc"), ("tenant", "carol")))
    assert after[seconds] > before.get(seconds, 0)  # carol's video took time


@needs_nginx
def test_a_reload_adds_and_revokes_tenants_without_dropping_a_stream(keyed_triton, test_ca, photo_png, tmp_path):
    gw = NginxGateway(tenants(), settings_for(keyed_triton, test_ca), tmp_path / "gateway").start()
    try:
        started, outcome = threading.Event(), []

        def long_run():
            with client_for(gw, test_ca, "alice") as client:
                result = client.generate(
                    small(photo_png, num_inference_steps=60, num_frames=16), on_progress=lambda s, t: started.set()
                )
                outcome.append(result.progress[-1])

        runner = threading.Thread(target=long_run)
        runner.start()
        assert started.wait(60)
        dave = Tenant("dave", key_hash("dave-key"))
        gw.reload([t for t in tenants() if t.name != "carol"] + [dave])  # carol revoked, dave added
        with client_for(gw, test_ca, "dave-key") as client:
            assert client.generate(small(photo_png)).video
        with client_for(gw, test_ca, "carol") as client, pytest.raises(UnauthorizedError):
            client.generate(small(photo_png))
        runner.join(120)
        assert outcome == [Progress(60, 60)]  # the stream that ran across the reload finished
        with pytest.raises(TenantsFileError, match="name must match"):
            gw.reload([Tenant("Bad name", "0" * 64)])  # a bad change leaves the running gateway as it was
        with client_for(gw, test_ca, "dave-key") as client:
            assert client.generate(small(photo_png)).video
    finally:
        gw.stop()
    assert not os.path.exists(gw.settings.pid_file)
