"""Crashed processes heal themselves, and a stop lets the video in flight finish: `i2v serve` as an operator
runs it (a subprocess with its supervisor), its processes killed for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ports import free_ports, health_get

from i2v.arguments import EXIT_SERVER_KILLED
from i2v.client import GenerationRequest, I2VClient, ServerUnavailableError, UnauthorizedError
from i2v.params import MODEL_NAME
from i2v.serving.drain import DrainGate, begin_drain, queued_requests, requests_in_flight
from i2v.serving.processes import PROC, processes, python_stubs
from i2v.video import decode_mp4

ROOT = Path(__file__).resolve().parents[1]

MODELS = ("text_encoder", "image_encoder", "vae_encoder", "unet", "vae_decoder", "i2vgen_xl", "i2vgen_xl_loras")


class ServeProcess:
    """`i2v serve` in its own process, as `make demo`'s users and the container run it."""

    def __init__(self, repository: Path, log: Path, *extra: str):
        self.grpc, self.http, self.metrics, self.health = free_ports(4)
        command = [sys.executable, "-m", "i2v.cli", "serve", "--model-repository", str(repository)]
        command += ["--grpc-port", str(self.grpc), "--http-port", str(self.http), "--metrics-port", str(self.metrics)]
        command += ["--health-port", str(self.health), "--log-file", str(log), *extra]
        self.log = log
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 180
        while self.get("/ready")[0] != 200:
            assert self.process.poll() is None, self.process.stdout.read()
            assert time.monotonic() < deadline, "i2v serve did not become ready"
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def get(self, path: str) -> tuple[int, str]:
        return health_get(self.health, path)

    def tritonserver(self) -> int:
        children = [p for p in _processes() if p["ppid"] == self.process.pid and p["comm"] == "tritonserver"]
        return children[0]["pid"]

    def stub_of(self, model: str) -> int:
        server = self.tritonserver()
        stubs = [p for p in _processes() if p["ppid"] == server and f"/{model}/1/model.py" in p["cmdline"]]
        assert len(stubs) == 1, stubs
        return stubs[0]["pid"]

    def readiness_until_back(self, may_be_missing: set[str], timeout_s: float = 60) -> list[int]:
        """/ready, polled after a kill until it has said 503 and then 200 again: the statuses seen. What a 503
        names as missing must be among `may_be_missing`."""
        readiness: list[int] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (503 in readiness and readiness[-1] == 200):
            status, body = self.get("/ready")
            readiness.append(status)
            if status == 503:
                missing = set(json.loads(body)["missing"])
                assert missing <= may_be_missing, body
            time.sleep(0.02)
        return readiness

    def restarts(self) -> dict[str, float]:
        """The supervisor's `i2v_part_restarts_total` by model (tritonserver: the server itself died)."""
        found = re.findall(r'^i2v_part_restarts_total\{model="([^"]+)"\} (\S+)$', self.get("/metrics")[1], re.MULTILINE)
        return {name: float(value) for name, value in found}

    def zombies(self) -> list[dict]:
        server = self.tritonserver()
        return [p for p in _processes() if p["ppid"] == server and p["state"] == "Z"]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def _processes() -> list[dict]:
    found = []
    for process in processes():
        entry = PROC / str(process.pid)
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(
            {"pid": process.pid, "ppid": process.ppid, "state": process.state, "comm": comm, "cmdline": cmdline}
        )
    return found


@pytest.fixture(scope="module")
def served(model_repository, tmp_path_factory):
    server = ServeProcess(model_repository, tmp_path_factory.mktemp("serve") / "server.log")
    yield server
    assert server.stop() == 0


class Background:
    """One video generated in a thread; `started` is set once its progress reached `at_step`."""

    def __init__(self, url: str, request: GenerationRequest, at_step: int, api_key: str | None = None):
        self.outcome: dict = {}
        self.started = threading.Event()

        def generate() -> None:
            def on_progress(step: int, total: int) -> None:
                if step == at_step:
                    self.started.set()

            with I2VClient(url, api_key=api_key) as client:
                try:
                    self.outcome["video"] = client.generate(request, on_progress=on_progress).video
                except Exception as exc:  # noqa: BLE001 - the test inspects it
                    self.outcome["error"] = exc
            self.started.set()

        self.thread = threading.Thread(target=generate)
        self.thread.start()
        assert self.started.wait(60), "the video did not start"

    def join(self) -> dict:
        self.thread.join(timeout=120)
        return self.outcome


def request(photo_png, steps: int) -> GenerationRequest:
    return GenerationRequest(
        image=photo_png, prompt="waves", height=64, width=64, num_frames=8, num_inference_steps=steps, seed=1
    )


@pytest.mark.parametrize("model", MODELS)
def test_a_killed_process_heals_itself_and_readiness_says_so_meanwhile(served, photo_png, model):
    """kill -9 one model's process while a video generates (at step 3 of 100): the request in flight gets a
    retryable error where it still needed the dead model (UNet, VAE decoder, the BLS itself) and its video where
    it did not (the encoders: the restart waits for it); readiness reports the outage; the supervisor restarts
    the server; a request succeeds again within 60 s without anyone acting; nothing of the old server is left."""
    victim = served.stub_of(model)
    before = served.restarts()
    video = Background(served.url, request(photo_png, 100), at_step=3)
    os.kill(victim, signal.SIGKILL)
    readiness = served.readiness_until_back({model, "tritonserver"})  # the server too, where the stub's death took it
    outcome = video.join()
    assert 503 in readiness and readiness[-1] == 200, f"readiness never showed the outage: {set(readiness)}"

    if model in ("text_encoder", "image_encoder", "vae_encoder", "i2vgen_xl_loras"):  # not needed after the kill
        assert outcome.get("video"), outcome
    else:
        error = outcome.get("error")
        assert isinstance(error, ServerUnavailableError) and error.retryable, outcome
        assert "retry" in str(error)
        if model != "i2vgen_xl":  # the BLS answers for its part, in plain words
            assert f"the {model} part's process stopped" in str(error) and "restarts" in str(error)
    with I2VClient(served.url) as client:
        assert client.generate(request(photo_png, 10)).video  # no manual action
    assert served.stub_of(model) != victim
    assert not served.zombies(), served.zombies()
    after = served.restarts()
    increased = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert increased in ({model: 1}, {"tritonserver": 1}), increased  # one restart, for this model or the server
    assert served.get("/live")[0] == 200


def test_models_reloaded_on_request_are_not_taken_for_dead(model_repository, tmp_path, photo_png):
    """`i2v models load` of a new version (its process starts before the old one's stops) and an unload followed
    by a load: planned, so the supervisor restarts nothing, counts no restart, and the server goes on serving."""
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository, symlinks=True)
    server = ServeProcess(repository, tmp_path / "server.log")
    try:
        before = server.tritonserver()

        def models(*args: str) -> None:
            command = [sys.executable, "-m", "i2v.cli", "models", *args, "--url", server.url]
            run = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr

        (repository / "unet" / "2").symlink_to(repository / "unet" / "1")
        models("load", "unet")
        models("unload", "i2vgen_xl_loras")
        models("load", "i2vgen_xl_loras")
        for _ in range(15):  # three seconds: the supervisor looks once a second
            assert server.get("/ready")[0] == 200
            time.sleep(0.2)
        assert set(server.restarts().values()) == {0.0}, server.restarts()
        assert server.tritonserver() == before
        with I2VClient(server.url) as client:
            assert client.generate(request(photo_png, steps=10)).video
    finally:
        assert server.stop() == 0
    assert "restarting the server" not in server.process.stdout.read()


def test_a_killed_tritonserver_is_started_again_by_i2v_serve(served, photo_png):
    """kill -9 tritonserver itself (a crash of the server, not of one model) while a video generates: that
    request gets a retryable error; `i2v serve` does not exit: its supervisor starts a new server, readiness
    names the outage meanwhile, and requests are served again."""
    victim = served.tritonserver()
    before = served.restarts()
    video = Background(served.url, request(photo_png, 100), at_step=3)
    os.kill(victim, signal.SIGKILL)
    readiness = served.readiness_until_back({"tritonserver"})
    assert served.process.poll() is None, served.process.stdout.read()
    assert 503 in readiness and readiness[-1] == 200, f"readiness never showed the outage: {set(readiness)}"
    error = video.join().get("error")  # the request in flight: retryable, in plain words
    assert isinstance(error, ServerUnavailableError) and error.retryable, error
    with I2VClient(served.url) as client:
        assert client.generate(request(photo_png, 10)).video
    assert served.tritonserver() != victim
    assert served.restarts()["tritonserver"] == before.get("tritonserver", 0) + 1
    assert served.get("/live")[0] == 200


def test_a_taken_health_port_is_refused_in_plain_words_before_triton_starts(model_repository, tmp_path):
    """`i2v serve` exits 1 (could not start) and `i2v supervise` 2, each naming the port and the flag, with no
    traceback and no model loaded first; no tritonserver is left behind."""
    grpc, http, metrics = free_ports(3)
    cli = [sys.executable, "-m", "i2v.cli"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = [*cli, "serve", "--model-repository", str(model_repository), "--grpc-port", str(grpc)]
        serve += ["--http-port", str(http), "--metrics-port", str(metrics), "--health-port", str(port)]
        served = subprocess.run(serve, capture_output=True, text=True, timeout=120)
        supervise = [*cli, "supervise", "--url", f"127.0.0.1:{grpc}", "--health-port", str(port)]
        supervise += ["--state-file", str(tmp_path / "supervisor.json")]
        supervised = subprocess.run(supervise, capture_output=True, text=True, timeout=60)
    in_use = f"error: port {port} (the supervisor's health) on 127.0.0.1 is in use ("
    assert served.returncode == 1, served.stdout + served.stderr
    assert in_use in served.stderr and "choose another with --health-port, or 0 for none" in served.stderr
    assert "Traceback" not in served.stderr and "Triton ready" not in served.stdout, served.stdout + served.stderr
    assert not [p for p in _processes() if f"--grpc-port={grpc}" in p["cmdline"]]
    assert supervised.returncode == 2, supervised.stdout + supervised.stderr
    assert in_use in supervised.stderr and "choose another with --health-port" in supervised.stderr
    assert "Traceback" not in supervised.stderr


def test_a_stop_during_a_recovery_does_not_start_the_server_again(model_repository, tmp_path):
    """SIGTERM while the supervisor waits to restart (the BLS's process died: it gives the request's error 3 s to
    reach the client): `i2v serve` stops and exits 0 without starting a new server first."""
    server = ServeProcess(model_repository, tmp_path / "server.log")
    try:
        os.kill(server.stub_of("i2vgen_xl"), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.get("/ready")[0] != 503:  # the supervisor saw the death: the restart waits its 3 s
            assert time.monotonic() < deadline, "the supervisor did not see the death"
            time.sleep(0.05)
        code = server.stop()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    output = server.process.stdout.read()
    assert code == 0 and "restarting the server" in output, output
    assert server.log.read_text().count("Started GRPCInferenceService") == 1  # the first server only


def test_sigterm_lets_the_videos_in_flight_and_queued_finish_then_exits_0(model_repository, tmp_path, photo_png):
    """A request accepted before the SIGTERM, running or waiting in Triton's queue, gets its video; one sent after
    it is refused retryably. Meanwhile the health port answers: not ready (new requests are refused), live."""
    server = ServeProcess(model_repository, tmp_path / "server.log", "--grace-period", "60")
    video = Background(server.url, request(photo_png, 60), at_step=2)
    queued: dict = {}

    def wait_in_the_queue() -> None:
        with I2VClient(server.url) as client:
            try:
                queued["video"] = client.generate(request(photo_png, 10)).video
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                queued["error"] = exc

    waiting = threading.Thread(target=wait_in_the_queue)
    waiting.start()
    metrics = f"http://127.0.0.1:{server.metrics}/metrics"
    deadline = time.monotonic() + 30
    while queued_requests(metrics) != 1:  # behind the running one
        assert time.monotonic() < deadline, "the second request never waited in Triton's queue"
        time.sleep(0.1)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with I2VClient(server.url) as client, pytest.raises(ServerUnavailableError, match="shutting down"):
        client.generate(request(photo_png, 10))  # refused, retryably, while the ones accepted finish
    status, body = server.get("/ready")
    assert status == 503 and json.loads(body)["stopping"], (status, body)
    assert server.get("/live")[0] == 200
    outcome = video.join()
    waiting.join(timeout=120)
    assert server.process.wait(timeout=120) == 0
    assert outcome.get("video"), outcome
    assert queued.get("video"), queued
    assert "new requests are refused" in server.process.stdout.read()


def test_the_drain_gate_serves_as_many_as_were_queued_then_refuses_until_the_drain_ends(tmp_path):
    marker = tmp_path / "draining"
    gate = DrainGate(marker)
    assert gate.admits() and gate.admits()  # no drain
    begin_drain(marker)  # nothing queued (no server to ask)
    assert not gate.admits()
    queued = tmp_path / "queued"
    queued.write_text("2\n")
    os.replace(queued, marker)  # a drain that found two waiting: counted afresh
    assert [gate.admits() for _ in range(3)] == [True, True, False]
    marker.unlink()
    assert gate.admits()  # the drain ended (`i2v drain --end`)
    marker.touch()  # a marker made by hand holds no count: refuse
    assert not gate.admits()


def test_a_bls_whose_process_died_has_nothing_in_flight_for_the_drain(model_repository, tmp_path, photo_png):
    """Triton keeps the dead BLS's in-flight gauge at the request it died in: a stop then (before a supervisor
    restarts the server) must not wait out the whole grace period for it."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    with EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log", exit_timeout_s=300) as server:
        video = Background(server.endpoints.grpc_url, request(photo_png, 60), at_step=2)
        os.kill(next(s.pid for s in python_stubs(server.pid) if s.model == MODEL_NAME), signal.SIGKILL)
        assert isinstance(video.join().get("error"), ServerUnavailableError)
        assert requests_in_flight(server.endpoints.metrics_url) == 1  # the dead process's gauge, as it left it
        start = time.monotonic()
        assert server.drain(timeout_s=60)
        assert time.monotonic() - start < 10


def compose_triton_command(key: str, repository: Path, binary: Path) -> tuple[list[str], dict[str, str]]:
    """docker-compose.yml's Triton service as the container runs it (entrypoint, then command), with the key
    in place of `${I2V_API_KEY:?...}` and the container's paths mapped to this machine's; and its environment."""
    import yaml

    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["triton"]
    mapped = {"/opt/i2v/": f"{ROOT}/", "--model-repository=/models": f"--model-repository={repository}"}
    command = []
    for arg in [*service["entrypoint"], *service["command"]]:
        arg = re.sub(r"\$\{I2V_API_KEY:\?[^}]*\}", key, arg)
        for container, here in mapped.items():
            arg = arg.replace(container, here)
        command.append(str(binary) if arg == "tritonserver" else arg)
    assert "${" not in " ".join(command), command
    return command, {k: str(v) for k, v in service.get("environment", {}).items()}


def test_composes_triton_command_serves_with_the_key_and_drains_before_stopping(model_repository, tmp_path, photo_png):
    """docker-compose.yml's own Triton command line (the draining entrypoint around tritonserver, every argument
    as written there) on a real tritonserver 2.51, the release of the image's NGC 24.10: a video needs the key and
    arrives, also after a restart that found an earlier drain's marker; then SIGTERM mid-video: the video arrives,
    a new request is refused retryably meanwhile, and the server exits 0. (Started where the image starts it,
    among the package's sources: test_packaging.py, with the installed wheel; this environment's editable install
    would not show that fault.)"""
    from i2v.serving.triton_install import find_tritonserver, prepare_backend_dir, server_env

    key = "compose-key-" + "k" * 20
    install = find_tritonserver()
    backends = prepare_backend_dir(install)
    command, compose_env = compose_triton_command(key, model_repository, install.binary)
    grpc, http, metrics = free_ports(3)  # the container's own ports, 8000-8002, may be taken on this machine
    command += [f"--backend-directory={backends}", f"--grpc-port={grpc}", f"--http-port={http}"]
    command += [f"--metrics-port={metrics}"]
    drain_file = tmp_path / "draining"
    drain_file.touch()  # left by the drain before a restart: the restarted container keeps its /tmp
    env = {**server_env(install), **compose_env, "I2V_DRAIN_FILE": str(drain_file)}
    env["I2V_METRICS_URL"] = f"http://127.0.0.1:{metrics}/metrics"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `i2v drain` from this environment
    url = f"127.0.0.1:{grpc}"
    with open(tmp_path / "server.log", "wb") as log:
        wrapper = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with I2VClient(url) as client:
                    client.wait_until_ready()
                break
            except ServerUnavailableError:
                assert time.monotonic() < deadline and wrapper.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        with I2VClient(url) as client, pytest.raises(UnauthorizedError):
            client.generate(request(photo_png, 10))  # no key
        with I2VClient(url, api_key=key) as client:
            assert decode_mp4(client.generate(request(photo_png, 10)).video).frames.shape[0] == 8

        video = Background(url, request(photo_png, 60), at_step=2, api_key=key)
        wrapper.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not drain_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with I2VClient(url, api_key=key) as client, pytest.raises(ServerUnavailableError, match="shutting down"):
            client.generate(request(photo_png, 10))
        outcome = video.join()
        assert wrapper.wait(timeout=120) == 0
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
        shutil.rmtree(backends, ignore_errors=True)
    assert outcome.get("video"), outcome


class Sidecar:
    """`i2v supervise` beside a tritonserver it did not start, as compose and Kubernetes run it."""

    def __init__(self, server, state_file: Path, *extra: str):
        self.health = free_ports(1)[0]
        command = [sys.executable, "-m", "i2v.cli", "supervise", "--url", server.endpoints.grpc_url]
        command += ["--pid", str(server.pid), "--health-port", str(self.health), "--state-file", str(state_file)]
        command += ["--metrics-url", server.endpoints.metrics_url, *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(self, path: str) -> tuple[int, str]:
        return health_get(self.health, path)

    def wait_for(self, path: str, status: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.get(path)[0] != status:
            assert self.process.poll() is None, self.process.stdout.read()
            assert time.monotonic() < deadline, f"{path} never answered {status}"
            time.sleep(0.2)

    def metric(self, name: str, model: str) -> float:
        found = re.search(rf'^{name}{{model="{model}"}} (\S+)$', self.get("/metrics")[1], re.MULTILINE)
        assert found, f"{name}{{model={model!r}}} not exported"
        return float(found[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_the_sidecar_supervisor_kills_a_broken_server_and_the_next_one_goes_on_counting(model_repository, tmp_path):
    """`i2v supervise` beside a tritonserver it did not start (as in compose and Kubernetes): a dead part makes
    it kill the server, for the container's restart policy to start again, and exit 75 itself. The supervisor
    that starts after it takes over the restart count and says "recovering" until a server is back whole, so
    the alerts on repeated restarts and on a recovery that does not end can fire."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    state = tmp_path / "supervisor.json"
    with EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log") as server:
        sidecar = Sidecar(server, state)
        try:
            sidecar.wait_for("/ready", 200)
            assert sidecar.metric("i2v_part_restarts_total", "unet") == 0
            stub = next(p for p in _processes() if p["ppid"] == server.pid and "/unet/1/model.py" in p["cmdline"])
            os.kill(stub["pid"], signal.SIGKILL)
            assert sidecar.process.wait(timeout=60) == EXIT_SERVER_KILLED
            deadline = time.monotonic() + 10
            while server.is_running() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not server.is_running()  # killed: the restart policy, not this test, would start it again
            assert "restarting the server" in sidecar.process.stdout.read()
            # the next supervisor, while the server is still down: it goes on from the count, and recovering
            sidecar = Sidecar(server, state)
            sidecar.wait_for("/live", 200)
            assert sidecar.metric("i2v_part_restarts_total", "unet") == 1
            assert sidecar.metric("i2v_part_recovering", "unet") == 1
            assert sidecar.get("/ready")[0] == 503
        finally:
            sidecar.stop()
    with EmbeddedTritonServer(model_repository, log_file=tmp_path / "again.log") as server:  # the restarted one
        sidecar = Sidecar(server, state)
        try:
            sidecar.wait_for("/ready", 200)
            assert sidecar.metric("i2v_part_recovering", "unet") == 0  # back whole: the recovery ended
            assert sidecar.metric("i2v_part_restarts_total", "unet") == 1
            assert json.loads(state.read_text())["recovering"] == {}
        finally:
            sidecar.stop()
    assert re.search(r"unet recovered: the server is back whole \d+ s after", sidecar.process.stdout.read())


def test_the_sidecar_kills_a_broken_server_though_it_cannot_keep_its_state_or_the_server_is_gone(
    model_repository, tmp_path
):
    """Neither a kill target that has already exited nor a state file that cannot be written ends the
    supervision: the sidecar still kills a server whose part died, exits 75, and logs why the count is not
    carried over. (Either used to end its thread silently, leaving /ready at its last answer forever.)"""
    from i2v.serving.triton_server import EmbeddedTritonServer

    exited = subprocess.Popen(["true"])
    exited.wait()
    (tmp_path / "afile").write_text("a regular file, not a folder")
    unwritable = tmp_path / "afile" / "supervisor.json"
    with EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log") as server:
        # told to watch a process that is gone: it has no stubs, so every model looks dead, and the kill finds
        # no process (the later --pid wins)
        sidecar = Sidecar(server, tmp_path / "supervisor.json", "--pid", str(exited.pid))
        try:
            assert sidecar.process.wait(timeout=60) == EXIT_SERVER_KILLED, sidecar.process.stdout.read()
            assert f"tritonserver (pid {exited.pid}) had already exited" in sidecar.process.stdout.read()
        finally:
            sidecar.stop()
        assert server.is_running()
        sidecar = Sidecar(server, unwritable)
        try:
            sidecar.wait_for("/ready", 200)
            stub = next(p for p in _processes() if p["ppid"] == server.pid and "/unet/1/model.py" in p["cmdline"])
            os.kill(stub["pid"], signal.SIGKILL)
            assert sidecar.process.wait(timeout=60) == EXIT_SERVER_KILLED, sidecar.process.stdout.read()
            deadline = time.monotonic() + 10
            while server.is_running() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not server.is_running()
        finally:
            sidecar.stop()
    output = sidecar.process.stdout.read()
    assert f"supervisor state {unwritable} not written" in output and "restarting the server" in output, output
    assert "Traceback" not in output, output


def test_a_sidecar_stopped_during_a_recovery_exits_0_and_leaves_the_server_to_its_container(model_repository, tmp_path):
    """SIGTERM while the sidecar waits to kill a server whose BLS process died (3 s for the request's error to
    reach the client): it exits 0, not 75 (that code says it killed the server), and kills nothing."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    with EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log") as server:
        sidecar = Sidecar(server, tmp_path / "supervisor.json")
        try:
            sidecar.wait_for("/ready", 200)
            stub = next(p for p in _processes() if p["ppid"] == server.pid and "/i2vgen_xl/1/model.py" in p["cmdline"])
            os.kill(stub["pid"], signal.SIGKILL)
            sidecar.wait_for("/ready", 503, timeout=10)
            sidecar.process.send_signal(signal.SIGTERM)
            assert sidecar.process.wait(timeout=30) == 0, sidecar.process.stdout.read()
            time.sleep(1)
            assert server.is_running()
        finally:
            sidecar.stop()


def test_keep_watching_with_a_fixed_pid_is_refused_saying_why():
    """The next server has another pid: a sidecar told to keep watching one pid would watch a dead process."""
    command = [sys.executable, "-m", "i2v.cli", "supervise", "--keep-watching", "--pid", "1"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "error: --keep-watching finds each next server by name: leave out --pid" in (
        run.stderr
    )


def test_a_kubernetes_sidecar_keeps_watching_the_next_server_in_its_pid_namespace(model_repository, tmp_path):
    """`i2v supervise --keep-watching`, as the Kubernetes Deployment runs it: after killing a server whose part
    died it does not exit (in a pod that would count as a crash, and its back-off would fail Triton's liveness
    probe); it finds the next server in the shared PID namespace, and says ready and recovered once it is back.
    The pod's namespace is a real one of this test's own (`unshare`), with the server found by name in it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a PID namespace of the test's own")
    helper = Path(__file__).with_name("pid_namespace_sidecar.py")
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(helper), str(model_repository)]
    command += [str(tmp_path), *(str(port) for port in free_ports(4))]
    run = subprocess.run(command, capture_output=True, text=True, timeout=400)
    if run.returncode != 0 and "Operation not permitted" in run.stderr:
        pytest.skip(f"no PID namespace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["sidecar_running_after_kill"] and seen["ready_while_down"] == 503, seen
    assert seen["restarts_unet"] == 1 and seen["recovering_unet"] == 0, seen
    assert seen["sidecar_exit"] == 0, seen
    assert "the process of unet died: restarting the server" in seen["sidecar_log"]
    assert re.search(r"unet recovered: the server is back whole \d+ s after", seen["sidecar_log"]), seen["sidecar_log"]


def test_the_sidecar_says_not_live_while_the_server_it_watches_hangs(model_repository, tmp_path):
    """Triton stopped (SIGSTOP: it holds its port and answers nothing): after the limit, /live turns 503, for
    the orchestrator to restart it; once it answers again, 200."""
    from i2v.serving.triton_server import EmbeddedTritonServer

    with EmbeddedTritonServer(model_repository, log_file=tmp_path / "server.log") as server:
        sidecar = Sidecar(server, tmp_path / "supervisor.json", "--unanswered-limit", "3")
        try:
            sidecar.wait_for("/ready", 200)
            os.kill(server.pid, signal.SIGSTOP)
            try:
                sidecar.wait_for("/live", 503, timeout=30)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            sidecar.wait_for("/live", 200, timeout=30)
            assert sidecar.get("/ready")[0] == 200
        finally:
            sidecar.stop()


def test_when_restarts_keep_failing_i2v_serve_gives_up_for_the_orchestrator(model_repository, tmp_path, photo_png):
    """A part that cannot load again (its code broken on disk after start) dies: the server stays not ready
    while three restarts fail, then `i2v serve` exits non-zero, for its container or service manager to act."""
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository, symlinks=True)
    server = ServeProcess(repository, tmp_path / "server.log")
    (repository / "unet" / "1" / "model.py").write_text("raise RuntimeError('a broken deployment')\n")
    os.kill(server.stub_of("unet"), signal.SIGKILL)
    ready = []
    deadline = time.monotonic() + 90
    while server.process.poll() is None and time.monotonic() < deadline:
        ready.append(server.get("/ready")[0])
        time.sleep(0.2)
    assert server.process.poll() not in (None, 0), "i2v serve did not give up"
    assert 503 in ready and 200 not in ready[ready.index(503) :]
    output = server.process.stdout.read()
    assert "restart 3 of 3 failed" in output and "a broken deployment" in output
