"""The embedded Triton launcher against the real server from the nvidia-pytriton wheel (no mocks)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from i2v.model.info import ModelInfo
from i2v.params import MODEL_NAME
from i2v.serving.gpus import gpus_listed, visible_gpu_ids
from i2v.serving.processes import PROC, is_alive, process_group_members, processes
from i2v.serving.triton_install import TritonServerError, check_numpy, find_tritonserver
from i2v.serving.triton_server import EmbeddedTritonServer, repository_cuda_memory_pool_bytes

DOUBLE_CONFIG = """\
name: "double"
backend: "python"
max_batch_size: 0
input [ { name: "X", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "Y", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""

DOUBLE_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", 2 * x)]))
        return responses
"""

# Doubles X like DOUBLE_MODEL, and says where its numpy and this project come from.
WHERE_MODEL = """\
import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

import i2v.params


class TritonPythonModel:
    def execute(self, requests):
        hidden = [name for name in ("scipy", "sklearn") if name in sys.modules and sys.modules[name] is None]
        where = json.dumps({"numpy": np.__file__, "i2v": i2v.params.__file__, "hidden": hidden}).encode()
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            outputs = [pb_utils.Tensor("Y", 2 * x), pb_utils.Tensor("WHERE", np.array([where], dtype=np.object_))]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

WHERE_CONFIG = """\
name: "where"
backend: "python"
max_batch_size: 0
input [ { name: "X", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [
  { name: "Y", data_type: TYPE_FP32, dims: [ -1 ] },
  { name: "WHERE", data_type: TYPE_STRING, dims: [ 1 ] }
]
"""

BROKEN_REASON = "weights file missing on purpose"

BROKEN_MODEL = f"""\
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("{BROKEN_REASON}")

    def execute(self, requests):
        return []
"""

SLOW_MODEL = """\
import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(60)
"""

# Unloads forever, as tritonserver 2.51 now and then leaves the BLS model unloading at a stop (triton_server.py).
STUCK_UNLOAD_MODEL = (
    DOUBLE_MODEL
    + """
    def finalize(self):
        import time

        time.sleep(600)
"""
)


def write_python_model(repository: Path, name: str, model_py: str, config: str | None = None) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(config or DOUBLE_CONFIG.replace('"double"', f'"{name}"'))
    (repository / name / "1" / "model.py").write_text(model_py)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (a model repository path names server and stubs)."""
    found = []
    for process in processes():
        try:
            cmdline = (PROC / str(process.pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and process.alive:
            found.append(process.pid)
    return found


def our_shm_regions() -> set[str]:
    """Python-backend shared-memory regions of servers started by this process (named after our pid)."""
    return {name for name in os.listdir("/dev/shm") if name.startswith(f"i2v_triton_{os.getpid()}_")}


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def double_with_grpc(url: str, values: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        tensor = grpcclient.InferInput("X", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        return client.infer("double", [tensor]).as_numpy("Y")


@pytest.fixture(scope="module")
def double_repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("double_repository")
    write_python_model(repository, "double", DOUBLE_MODEL)
    return repository


@pytest.fixture(scope="module")
def double_server(double_repository, tmp_path_factory):
    log = tmp_path_factory.mktemp("triton_log") / "server.log"
    with EmbeddedTritonServer(double_repository, log_file=log, startup_timeout_s=60) as server:
        yield server


def test_find_tritonserver_picks_the_stub_for_the_running_python():
    install = find_tritonserver()
    version = "{}.{}".format(*sys.version_info[:2])
    assert install.python_version == version
    assert install.stub.name == "triton_python_backend_stub"
    assert install.stub.parent.name == version
    assert install.stub.is_file()
    assert os.access(install.binary, os.X_OK)
    assert (install.python_backend_dir / "libtriton_python.so").is_file()
    assert install.libs_dir.is_dir()


def test_find_tritonserver_names_a_python_version_without_stub():
    with pytest.raises(TritonServerError, match=r"no Python-backend stub for Python 3\.99 \(it has: .*3\.1"):
        find_tritonserver(python_version=(3, 99))


def test_environment_has_numpy_below_2_for_the_python_backend():
    check_numpy()  # numpy 2 makes models receive empty tensors silently: fail loudly here instead


def dist_info(site: Path, name: str, version: str) -> None:
    """A package's metadata as pip installs it (`<name>-<version>.dist-info/METADATA`), without the package."""
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_a_stub_site_with_numpy_2_or_none_is_refused_naming_it(tmp_path):
    """Where the environment keeps numpy 2 for other packages, the models get numpy<2 from a folder of their own
    (I2V_STUB_SITE): its numpy is the one checked."""
    with pytest.raises(TritonServerError, match=r"numpy is not installed in I2V_STUB_SITE=.*pip install --target"):
        check_numpy(tmp_path)
    dist_info(tmp_path, "numpy", "2.1.0")
    with pytest.raises(TritonServerError, match=r"numpy 2\.1\.0 is installed in I2V_STUB_SITE="):
        check_numpy(tmp_path)
    other = tmp_path / "other"
    dist_info(other, "numpy", "1.26.4")
    check_numpy(other)


def test_a_system_pythons_library_folder_is_not_put_before_every_librarys_own_runpath(monkeypatch, tmp_path):
    """The stub links libpython: its folder goes on LD_LIBRARY_PATH only where the loader would not look (a pyenv
    Python's), never a system folder, where it would outrank torch's own CUDA libraries in the models."""
    import sysconfig

    from i2v.serving.triton_install import libpython_dir

    real = sysconfig.get_config_var
    for folder in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib"):
        values = {"LIBDIR": folder, "MULTIARCH": "x86_64-linux-gnu"}
        monkeypatch.setattr(sysconfig, "get_config_var", lambda name, values=values: values.get(name, real(name)))
        assert libpython_dir() is None, folder
    values = {"LIBDIR": str(tmp_path), "MULTIARCH": "x86_64-linux-gnu"}
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: values.get(name, real(name)))
    assert libpython_dir() == str(tmp_path)


def test_models_import_numpy_from_the_stub_site_first(tmp_path):
    """With I2V_STUB_SITE the models' processes take numpy from that folder, and everything else (this project,
    installed editable) from this environment, without the packages built for the environment's numpy 2 that
    transformers would import if present (scipy, scikit-learn); they serve."""
    import json

    import numpy
    import tritonclient.grpc as grpcclient

    site = tmp_path / "stub-site"
    installed = Path(numpy.__file__).parent.parent
    for name in ("numpy", f"numpy-{numpy.__version__}.dist-info", "numpy.libs"):
        if (installed / name).exists():
            shutil.copytree(installed / name, site / name)
    repository = tmp_path / "repository"
    write_python_model(repository, "where", WHERE_MODEL, WHERE_CONFIG)
    with (
        EmbeddedTritonServer(repository, log_file=tmp_path / "server.log", env={"I2V_STUB_SITE": str(site)}) as server,
        grpcclient.InferenceServerClient(server.endpoints.grpc_url) as client,
    ):
        tensor = grpcclient.InferInput("X", [2], "FP32")
        tensor.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
        answer = client.infer("where", [tensor])
        where = json.loads(answer.as_numpy("WHERE")[0])
    assert answer.as_numpy("Y").tolist() == [2.0, 4.0]  # tensors arrive whole
    assert Path(where["numpy"]).is_relative_to(site)
    assert where["i2v"] == str(Path(__file__).resolve().parents[1] / "i2v" / "params.py")
    assert where["hidden"] == ["scipy", "sklearn"]


def test_a_folder_named_i2v_where_the_server_starts_does_not_shadow_the_installed_package(tmp_path, monkeypatch):
    """The models' processes start in a folder of their own: started in a checkout with a non-editable install
    (the GPU image's wheels), the checkout's partial `i2v/` folder (`i2v.serving` lives in `serving/`) shadowed
    the installed package and every model failed to load with "No module named 'i2v.serving'"."""
    import json

    import tritonclient.grpc as grpcclient

    checkout = tmp_path / "checkout"
    (checkout / "i2v").mkdir(parents=True)
    (checkout / "i2v" / "__init__.py").write_text("raise ImportError('the folder the server was started in')\n")
    repository = tmp_path / "repository"
    write_python_model(repository, "where", WHERE_MODEL, WHERE_CONFIG)
    monkeypatch.chdir(checkout)
    with (
        EmbeddedTritonServer(repository, log_file=tmp_path / "server.log", startup_timeout_s=60) as server,
        grpcclient.InferenceServerClient(server.endpoints.grpc_url) as client,
    ):
        tensor = grpcclient.InferInput("X", [1], "FP32")
        tensor.set_data_from_numpy(np.array([1], dtype=np.float32))
        where = json.loads(client.infer("where", [tensor]).as_numpy("WHERE")[0])
    assert where["i2v"] == str(Path(__file__).resolve().parents[1] / "i2v" / "params.py")


def test_server_starts_on_free_loopback_ports(double_server):
    endpoints = double_server.endpoints
    assert double_server.is_running()
    assert endpoints.grpc_url == f"127.0.0.1:{double_server.grpc_port}"
    assert endpoints.http_url == f"127.0.0.1:{double_server.http_port}"
    assert endpoints.metrics_url == f"http://127.0.0.1:{double_server.metrics_port}/metrics"
    assert len({double_server.grpc_port, double_server.http_port, double_server.metrics_port}) == 3
    assert "successfully loaded 'double'" in double_server.log_path.read_text()


def test_grpc_inference_runs_the_python_model(double_server):
    values = np.array([0.5, -1.0, 3.0, 7.25], dtype=np.float32)
    np.testing.assert_array_equal(double_with_grpc(double_server.endpoints.grpc_url, values), 2 * values)


def test_metrics_count_inferences(double_server):
    double_with_grpc(double_server.endpoints.grpc_url, np.ones(2, dtype=np.float32))
    with urllib.request.urlopen(double_server.endpoints.metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    counts = [line for line in metrics.splitlines() if line.startswith('nv_inference_count{model="double"')]
    assert counts, metrics[:2000]
    assert float(counts[0].rsplit(" ", 1)[-1]) >= 1


def test_stop_ends_server_and_stubs_and_releases_ports(double_repository, tmp_path):
    server = EmbeddedTritonServer(double_repository, log_file=tmp_path / "server.log", startup_timeout_s=60)
    server.start()
    group = process_group_members(server.pid)
    stubs = [pid for pid in group if pid != server.pid]
    assert server.pid in group and stubs, "expected the server and one Python-backend stub"
    ports = (server.grpc_port, server.http_port, server.metrics_port)
    assert server.drain() and server.drain_file.exists()  # nothing in flight: drained at once

    server.stop()

    assert not server.is_running()
    assert server.returncode == 0 and not server.killed_at_stop, server.log_tail()  # SIGTERM: a graceful shutdown
    assert [pid for pid in group if is_alive(pid)] == []
    assert all(port_is_free(port) for port in ports)
    assert not server.drain_file.exists()  # its own marker: one per server stopped piled up in /tmp
    server.stop()  # idempotent


def test_a_drain_marker_the_caller_names_is_used_and_left_in_place(double_repository, tmp_path):
    """I2V_DRAIN_FILE given in `env` is the server's marker (the one drain() writes); it is the caller's, so
    stop() leaves it."""
    marker = tmp_path / "draining"
    server = EmbeddedTritonServer(double_repository, env={"I2V_DRAIN_FILE": str(marker)})
    assert server.drain_file == marker
    marker.touch()
    server.stop()
    assert marker.exists()


def test_an_idle_server_whose_model_never_unloads_is_killed_not_waited_for(tmp_path):
    """Nothing in flight: Triton only unloads at a stop, so a model stuck unloading costs `UNLOAD_TIMEOUT_S`, not
    the exit timeout (here 300 s, as `i2v serve`'s grace period), and leaves no process behind."""
    from i2v.serving.triton_server import UNLOAD_TIMEOUT_S

    repository = tmp_path / "repository"
    write_python_model(repository, "stuck", STUCK_UNLOAD_MODEL)
    server = EmbeddedTritonServer(repository, log_file=tmp_path / "server.log", exit_timeout_s=300)
    server.start()
    group = process_group_members(server.pid)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < UNLOAD_TIMEOUT_S + 30 < server.exit_timeout_s  # not the exit timeout
    assert server.killed_at_stop and "Found 1 live models" in (tmp_path / "server.log").read_text()
    assert [pid for pid in group if is_alive(pid)] == []


def test_broken_model_fails_start_with_the_server_reason(tmp_path):
    repository = tmp_path / "repository"
    write_python_model(repository, "broken", BROKEN_MODEL)
    server = EmbeddedTritonServer(repository, extra_args=["--exit-on-error=true"], startup_timeout_s=60)

    with pytest.raises(TritonServerError) as failure:
        server.start()

    message = str(failure.value)
    assert "exited with code" in message
    assert BROKEN_REASON in message
    assert str(server.log_path) in message
    assert not server.is_running()


SERVE_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from i2v.serving.serve import serve_forever
    from i2v.serving.triton_server import EmbeddedTritonServer
    sys.exit(serve_forever(EmbeddedTritonServer(Path(sys.argv[1]), startup_timeout_s=60)))
""")


def start_serve(repository: Path) -> subprocess.Popen[str]:
    """`serve_forever` in its own interpreter, as `i2v serve` runs it."""
    return subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(repository)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_serve_forever_stops_cleanly_on_sigint(double_repository):
    process = start_serve(double_repository)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        assert "Triton ready (pid " in output, output
        server_pid = int(output.split("Triton ready (pid ", 1)[1].split(")", 1)[0])
        assert "gRPC     127.0.0.1:" in output and "metrics  http://127.0.0.1:" in output

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=40) == 0, output + process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert not is_alive(server_pid)


def test_slow_start_times_out_and_leaves_no_process(tmp_path):
    repository = tmp_path / "repository"
    write_python_model(repository, "slow", SLOW_MODEL)
    regions_before = our_shm_regions()
    server = EmbeddedTritonServer(repository, startup_timeout_s=2)

    with pytest.raises(TritonServerError, match="did not become ready within 2 s") as failure:
        server.start()

    assert "loading: slow:1" in str(failure.value)
    assert not server.is_running()
    assert processes_mentioning(str(repository)) == []  # the server and the stub stuck in initialize
    assert our_shm_regions() == regions_before  # a killed stub's region is not left in /dev/shm


class AnswersEverything(BaseHTTPRequestHandler):
    """Another HTTP server, saying 200 to any GET (Triton's health check and metrics included)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_host_name_is_listened_on_at_its_address(double_repository):
    """tritonserver's HTTP service takes addresses only (given "localhost" it listened on 255.255.255.255 and was
    never ready): the name is resolved first, and the server answers on it."""
    with EmbeddedTritonServer(double_repository, host="localhost", startup_timeout_s=60) as server:
        assert server.host == "127.0.0.1"
        assert server.endpoints.grpc_url == f"127.0.0.1:{server.grpc_port}"
        values = np.array([1.5], dtype=np.float32)
        np.testing.assert_array_equal(double_with_grpc(server.endpoints.grpc_url, values), 2 * values)


@pytest.mark.parametrize(
    ("host", "reason"), [("::", "takes IPv4 addresses only"), ("no-such-host.invalid", "cannot listen on")]
)
def test_an_address_tritonserver_cannot_listen_on_is_refused_before_launch(tmp_path, host, reason):
    """An IPv6 address (its gRPC service then fails, calling the port in use) or a name that does not resolve:
    refused in words, with no process started."""
    repository = tmp_path / "repository"
    write_python_model(repository, "double", DOUBLE_MODEL)
    with pytest.raises(TritonServerError, match=reason):
        EmbeddedTritonServer(repository, host=host)
    assert processes_mentioning(str(repository)) == []


@pytest.mark.parametrize("service", ["grpc", "http", "metrics"])
def test_a_port_another_server_listens_on_fails_start_naming_it(tmp_path, service):
    """Not "ready" on the other server's answers (Triton only logs that its service failed): refused before
    launching, naming the port, and nothing is left behind."""
    repository = tmp_path / "repository"
    write_python_model(repository, "double", DOUBLE_MODEL)
    other = ThreadingHTTPServer(("127.0.0.1", 0), AnswersEverything)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    regions_before = our_shm_regions()
    server = EmbeddedTritonServer(repository, startup_timeout_s=60, **{f"{service}_port": port})
    try:
        with pytest.raises(TritonServerError, match=rf"port {port} \({service}\) on 127.0.0.1 is in use"):
            server.start()
    finally:
        server.stop()
        other.shutdown()
        other.server_close()
    assert processes_mentioning(str(repository)) == []
    assert our_shm_regions() == regions_before


def test_serve_forever_stops_on_sigterm_during_start_up(tmp_path):
    repository = tmp_path / "repository"
    write_python_model(repository, "slow", SLOW_MODEL)
    process = start_serve(repository)
    try:
        deadline = time.monotonic() + 30
        while not processes_mentioning(str(repository / "slow" / "1" / "model.py")):  # the stub is loading
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.1)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopping Triton (SIGTERM)" in process.stdout.read()
    assert processes_mentioning(str(repository)) == []


# -- the CUDA memory pool on a GPU host ------------------------------------------------------------------

POOL = 256 * 2**20
NVIDIA_SMI_LIST = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-4b1f0c2e-0000-0000-0000-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9d2e7a10-0000-0000-0000-000000000001)
  MIG 3g.20gb     Device  0: (UUID: MIG-5c89a9f2-0000-0000-0000-000000000002)
"""


def fake_nvidia_smi(folder: Path, output: str, exit_code: int = 0) -> Path:
    """An `nvidia-smi` executable that prints `output` for `-L` and exits with `exit_code`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\nexit {exit_code}\n")
    script.chmod(0o755)
    return folder


def pool_flags(server: EmbeddedTritonServer) -> list[str]:
    command = server.command(Path("/opt/tritonserver/bin/tritonserver"), Path("/tmp/backends"))
    return [arg for arg in command if arg.startswith("--cuda-memory-pool-byte-size")]


@pytest.fixture
def gpu_host(tmp_path, monkeypatch) -> Path:
    """PATH with an nvidia-smi that lists two GPUs, as on a host or container with the NVIDIA driver."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(fake_nvidia_smi(tmp_path / "bin", NVIDIA_SMI_LIST)), os.environ["PATH"]])
    )
    return tmp_path


def test_command_sets_the_cuda_memory_pool_on_every_gpu_the_driver_lists(gpu_host):
    server = EmbeddedTritonServer(gpu_host, log_file=gpu_host / "log", cuda_memory_pool_bytes=POOL, extra_args=["-x"])
    command = server.command(Path("tritonserver"), Path("backends"))
    assert pool_flags(server) == [f"--cuda-memory-pool-byte-size=0:{POOL}", f"--cuda-memory-pool-byte-size=1:{POOL}"]
    assert command[-1] == "-x"  # extra_args still come last, so they can override the pool


def test_command_sets_the_pool_only_on_the_gpus_cuda_visible_devices_shows(gpu_host):
    server = EmbeddedTritonServer(
        gpu_host, log_file=gpu_host / "log", cuda_memory_pool_bytes=POOL, env={"CUDA_VISIBLE_DEVICES": "1"}
    )
    assert pool_flags(server) == [f"--cuda-memory-pool-byte-size=0:{POOL}"]  # CUDA renumbers from 0
    hidden = EmbeddedTritonServer(
        gpu_host, log_file=gpu_host / "log", cuda_memory_pool_bytes=POOL, env={"CUDA_VISIBLE_DEVICES": ""}
    )
    assert pool_flags(hidden) == []


def test_command_leaves_the_pool_to_triton_without_a_size(gpu_host):
    for size in (None, 0):  # 0: model_info.json of a repository that planned none
        server = EmbeddedTritonServer(gpu_host, log_file=gpu_host / "log", cuda_memory_pool_bytes=size)
        assert pool_flags(server) == []


def test_command_has_no_cuda_memory_pool_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi at all: no driver
    server = EmbeddedTritonServer(tmp_path, log_file=tmp_path / "log", cuda_memory_pool_bytes=POOL)
    assert pool_flags(server) == []
    # nvidia-smi present but the driver is not loaded: it fails, as it does on such a machine
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(fake_nvidia_smi(tmp_path / "bin", message, 9)), os.environ["PATH"]])
    )
    assert pool_flags(server) == []


def test_nvidia_smi_listing_counts_gpus_not_mig_devices():
    assert gpus_listed(NVIDIA_SMI_LIST) == 2
    assert gpus_listed("") == 0
    assert gpus_listed("No devices were found\n") == 0


@pytest.mark.parametrize(
    ("gpus", "cuda_visible_devices", "expected"),
    [
        (2, None, (0, 1)),
        (0, None, ()),
        (4, "2,3", (0, 1)),
        (2, "GPU-4b1f0c2e-0000-0000-0000-000000000000", (0,)),
        (2, "", ()),
        (2, "-1", ()),
        (2, "1,7,0", (0,)),  # CUDA stops at the first entry that names no device
        (0, "0", ()),
    ],
)
def test_visible_gpu_ids_follow_cuda_visible_devices(gpus, cuda_visible_devices, expected):
    assert visible_gpu_ids(gpus, cuda_visible_devices) == expected


def test_serve_reads_the_pool_the_export_recorded_in_model_info(tmp_path):
    repository = tmp_path / "repository"
    (repository / MODEL_NAME / "1").mkdir(parents=True)
    assert repository_cuda_memory_pool_bytes(repository) is None  # exported before the pool was recorded

    def record(version: int, pool: int) -> None:
        pipeline = repository / MODEL_NAME / str(version) / "pipeline"
        pipeline.mkdir(parents=True)
        info = ModelInfo("tiny", 8, 0.18215, 4, 16, 77, runtime="tensorrt", cuda_memory_pool_bytes=pool)
        info.save(pipeline)

    record(1, 0)
    assert repository_cuda_memory_pool_bytes(repository) is None  # 0: Triton's default
    record(2, POOL)
    assert repository_cuda_memory_pool_bytes(repository) == POOL  # the version Triton serves: the highest
