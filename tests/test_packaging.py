"""The built wheel works away from the checkout: what `pip install i2v-serving` gives a user.

The wheel is built from this tree and installed into a fresh virtual environment in a temporary folder; the
commands that need the bundled example picture then run from another temporary folder, so nothing can be
found by accident in the checkout. The environment borrows the test environment's installed dependencies
(a path entry, not a copy) so that no network is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    from i2v.benchmarks.wheelhouse import project_wheel

    return project_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its python. Dependencies come from this environment."""
    home = tmp_path_factory.mktemp("fresh-venv")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # after the venv's own site-packages, so the installed wheel wins over this checkout's editable install
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    return python


def run(python: Path, code_or_args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [python, *code_or_args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600, check=False
    )


def test_wheel_ships_the_example_picture_and_py_typed(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "i2v/py.typed" in names
    assert "i2v/examples/lighthouse.png" in names


def test_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = run(installed, ["-c", "import i2v, i2v.examples; print(i2v.__file__, i2v.examples.__file__)"], tmp_path)
    assert where.returncode == 0, where.stderr
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout


def test_bench_and_the_ui_find_the_example_picture_when_installed(installed, tmp_path):
    bench = run(
        installed,
        ["-m", "i2v.cli", "bench", "--runners", "torch", "--grid", "64x64x8", "--steps", "10"]
        + ["--warmup", "0", "--repeats", "1", "--concurrency", "0", "--output", str(tmp_path / "bench")],
        tmp_path,
    )
    assert bench.returncode == 0, bench.stderr[-3000:]
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]
    assert [(r["runner"], r["height"], r["width"], r["frames"]) for r in rows] == [("torch", 64, 64, 8)]

    pytest.importorskip("gradio", reason="the UI needs gradio")
    code = (
        "from pathlib import Path; from i2v.ui.app import build_app; app = build_app('127.0.0.1:1'); "
        "examples = [b for b in app.blocks.values() if type(b).__name__ == 'Dataset']; "
        "paths = [Path(p['path']) for row in examples[0].samples for p in row if isinstance(p, dict)]; "
        "print(all(p.is_file() for p in paths) and len(paths))"
    )
    ui = run(installed, ["-c", code], tmp_path)
    assert ui.returncode == 0 and ui.stdout.strip() == "1", ui.stderr[-3000:]


def test_demo_serves_the_bundled_picture_from_the_installed_package(installed, model_repository, tmp_path):
    """`i2v demo` on an exported repository: Triton's Python models import the installed `i2v.serving`."""
    demo = run(
        installed,
        ["-m", "i2v.cli", "demo", "--model-repository", str(model_repository), "--steps", "10", "--num-frames", "8"]
        + ["-o", str(tmp_path / "demo.mp4")],
        tmp_path,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    metadata = json.loads((tmp_path / "demo.json").read_text())
    assert metadata["parameters"]["prompt"].startswith("A lighthouse") and metadata["frames"] == 8


def test_numpy_below_2_is_the_servers_requirement_not_the_clients(wheel):
    """The client runs with numpy 2 (Python 3.13 has no numpy<2 wheels); the server's Python backend needs <2,
    and the wheelhouse for a GPU host takes the server's bound."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    from i2v.benchmarks.wheelhouse import pinned

    archive = zipfile.ZipFile(wheel)
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    numpy = [Requirement(line.split(":", 1)[1]) for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    numpy = [r for r in numpy if r.name == "numpy"]
    client = [r for r in numpy if r.marker is None]
    server = [r for r in numpy if r.marker is not None and r.marker.evaluate({"extra": "server"})]
    assert client and all(r.specifier.contains("2.5") for r in client)
    assert server and not any(r.specifier.contains("2.0") for r in server)
    assert not SpecifierSet(pinned("numpy").removeprefix("numpy")).contains("2.0")


def test_the_gpu_hosts_client_pin_meets_this_projects_own_requirement():
    """The wheelhouse carries the client of the embedded server's release rather than the newest one; raising the
    project's minimum past it must move the pin too."""
    from packaging.requirements import Requirement

    from i2v.benchmarks.wheelhouse import GPU_HOST_PINS, SERVED, pinned

    for package, pin in GPU_HOST_PINS.items():
        assert package in SERVED
        (version,) = (spec.version for spec in Requirement(pin).specifier)
        assert Requirement(pinned(package)).specifier.contains(version), (pin, pinned(package))


def test_make_gpu_proof_measures_the_sizes_of_the_gpu_suite():
    """`make gpu-proof` runs one `i2v bench --suite gpu` call per size (each under 10 minutes); its GPU_GRID must
    be the suite's own grid, which the Makefile cannot import."""
    import re

    from i2v.benchmarks.command import FULL_SIZE_DEFAULTS

    makefile = (ROOT / "Makefile").read_text()
    grid = re.search(r"^GPU_GRID \?= ([^#\n]*)", makefile, re.MULTILINE).group(1).split()
    assert grid == FULL_SIZE_DEFAULTS[0].split(",")


def test_the_models_import_the_installed_package_from_a_checkout_as_working_directory(
    installed, model_repository, tmp_path
):
    """The Python backend's stub puts its working directory first on sys.path. The Triton image runs the server
    in /opt/i2v, which holds the sources it was installed from, whose `i2v/` folder is only the core (the other
    packages live in folders of their own): a server started there must still load every model."""
    workdir = tmp_path / "opt-i2v"
    for folder in ("i2v", "serving", "client"):  # as docker/triton.Dockerfile copies them into its WORKDIR
        shutil.copytree(ROOT / folder, workdir / folder, ignore=shutil.ignore_patterns("__pycache__"))
    demo = run(
        installed.parent / "i2v",  # the console script: its own folder, not the working directory, on sys.path
        ["demo", "--model-repository", str(model_repository), "--steps", "10", "--num-frames", "8"]
        + ["-o", str(tmp_path / "demo.mp4")],
        workdir,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    assert json.loads((tmp_path / "demo.json").read_text())["frames"] == 8
