"""Find and prepare the `tritonserver` of the nvidia-pytriton wheel for this interpreter, without Docker.

The wheel ships the server binary, the Python backend, one backend stub per Python version and the shared
libraries they need; PyTriton's own Python API is not used. What it takes to run it (docs/embedded-triton.md):

- a backend directory holding `backends/python` with the stub for *this* Python next to `libtriton_python.so`
  (a stub for another version makes model loading hang with no error);
- `LD_LIBRARY_PATH` with the wheel's `nvidia_pytriton.libs` (the copied files lose their relative RPATH);
- this environment's `bin` first on `PATH`, so the stub's embedded Python uses this environment's packages;
- numpy < 2 in this environment (with numpy 2 the Python backend silently receives empty tensors), or, where
  the environment needs numpy 2 for other packages (a GPU image's scipy), numpy < 2 in a folder of its own that
  `I2V_STUB_SITE` names (`pip install --target DIR 'numpy<2'`): the models' processes then run in a small
  virtual environment that puts that folder before this environment's packages (the stub's interpreter ignores
  PYTHONPATH), while this process and the clients keep numpy 2.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "pip install 'i2v-serving[server]'"
STUB_SITE_ENV = "I2V_STUB_SITE"  # a folder with numpy<2 for the models' processes only (`check_numpy`)
# Optional imports of transformers and diffusers that an environment needing numpy 2 (a GPU image) has built
# against it: in the models' processes, on numpy<2, they are absent instead of failing to import.
STUB_HIDDEN_PACKAGES = ("scipy", "sklearn")
STUB_NAME = "triton_python_backend_stub"


class TritonServerError(RuntimeError):
    """The embedded server cannot be found, prepared, started or kept running."""


@dataclass(frozen=True)
class TritonInstall:
    """The parts of the nvidia-pytriton wheel the server needs, for one Python version."""

    binary: Path  # pytriton/tritonserver/bin/tritonserver
    python_backend_dir: Path  # pytriton/tritonserver/backends/python (libtriton_python.so, utils)
    stub: Path  # pytriton/tritonserver/python_backend_stubs/X.Y/triton_python_backend_stub
    libs_dir: Path  # site-packages/nvidia_pytriton.libs
    python_version: str  # "X.Y" the stub is built for
    libpython: str  # the libpythonX.Y.so.1.0 the stub will link: a path, or a soname the system linker knows


def find_tritonserver(python_version: tuple[int, int] | None = None) -> TritonInstall:
    """Locate the server, the Python backend and the stub for this interpreter (or `python_version`).

    Fails with a message naming the missing part, because every one of them otherwise shows up as a hang or
    a cryptic loader error inside the server log.
    """
    major, minor = python_version or sys.version_info[:2]
    version = f"{major}.{minor}"
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(f"nvidia-pytriton is not installed: {INSTALL_HINT}")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    root = package_dir / "tritonserver"
    binary = root / "bin" / "tritonserver"
    python_backend_dir = root / "backends" / "python"
    libs_dir = package_dir.parent / "nvidia_pytriton.libs"
    for path, what in (
        (binary, "the tritonserver binary"),
        (python_backend_dir / "libtriton_python.so", "the Python backend"),
        (libs_dir, "the bundled shared libraries"),
    ):
        if not path.exists():
            raise TritonServerError(
                f"nvidia-pytriton is incomplete: {what} is missing ({path}); reinstall it: {INSTALL_HINT}"
            )
    stubs_dir = root / "python_backend_stubs"
    stub = stubs_dir / version / STUB_NAME
    if not stub.is_file():
        found = stubs_dir.iterdir() if stubs_dir.is_dir() else ()
        available = sorted(p.name for p in found if (p / STUB_NAME).is_file())
        raise TritonServerError(
            f"nvidia-pytriton has no Python-backend stub for Python {version} (it has: "
            f"{', '.join(available) or 'none'}); run the server from one of those Python versions"
        )
    return TritonInstall(binary, python_backend_dir, stub, libs_dir, version, _find_libpython(version))


def _find_libpython(version: str) -> str:
    """The stub links libpythonX.Y.so.1.0 dynamically: a static-only Python cannot run it."""
    name = f"libpython{version}.so.1.0"
    if version == "{}.{}".format(*sys.version_info[:2]):
        own = Path(sysconfig.get_config_var("LIBDIR") or "") / name
        if own.is_file():
            return str(own)
    found = ctypes.util.find_library(f"python{version}")
    if found:
        return found
    raise TritonServerError(
        f"the Python-backend stub for Python {version} needs {name}, which is neither in this interpreter's "
        f"lib directory nor known to the system linker: install it (Debian/Ubuntu: apt-get install "
        f"libpython{version}) or use a Python built with --enable-shared"
    )


def check_numpy(stub_site: Path | None = None) -> None:
    """numpy 2 in the stub's environment makes the Python backend receive empty tensors, without an error. The
    numpy checked: the one in `stub_site` (`I2V_STUB_SITE`) where given, else this environment's."""
    if stub_site is not None:
        found = [d.version for d in importlib.metadata.distributions(path=[str(stub_site)]) if d.name == "numpy"]
        where, numpy_version = f"{STUB_SITE_ENV}={stub_site}", found[0] if found else None
        fix = f"pip install --target {stub_site} 'numpy<2'"
    else:
        where, fix = "this environment", "pip install 'numpy<2'"
        try:
            numpy_version = importlib.metadata.version("numpy")
        except importlib.metadata.PackageNotFoundError:
            numpy_version = None
    if numpy_version is None:
        raise TritonServerError(f"numpy is not installed in {where}; the Python backend needs numpy<2: {fix}")
    if int(numpy_version.split(".")[0]) >= 2:
        raise TritonServerError(
            f"numpy {numpy_version} is installed in {where}, but tritonserver 2.51's Python backend needs numpy<2 "
            f"(with numpy 2 models silently receive empty tensors): {fix}, or give the models a folder of their "
            f"own with numpy<2 in {STUB_SITE_ENV}"
        )


def prepare_backend_dir(install: TritonInstall) -> Path:
    """A private `<backends>/python` with the stub for this Python next to libtriton_python.so."""
    backends = Path(tempfile.mkdtemp(prefix="i2v-triton-backends-"))
    python_dir = backends / "python"
    shutil.copytree(install.python_backend_dir, python_dir, ignore=shutil.ignore_patterns("__pycache__"))
    stub = python_dir / STUB_NAME
    shutil.copy2(install.stub, stub)
    stub.chmod(0o755)
    return backends


def stub_environment(folder: Path, stub_site: Path) -> Path:
    """A virtual environment for the models' processes only; returns its bin folder. The stub's interpreter runs
    isolated (PYTHONPATH is ignored) in the environment of the python3 first on PATH, and reads that
    environment's .pth files: this one's puts `stub_site` first, then this environment's packages (with their
    own .pth files: an editable install), and hides `STUB_HIDDEN_PACKAGES`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    (site_packages,) = folder.glob("lib/python*/site-packages")
    own = [path for path in site.getsitepackages() if Path(path).is_dir()]
    lines = [str(stub_site), *(f"import site; site.addsitedir({path!r})" for path in own)]
    lines.append(f"import sys; sys.modules.update(dict.fromkeys({STUB_HIDDEN_PACKAGES!r}))")  # find_spec: None
    (site_packages / "i2v_stub_site.pth").write_text("\n".join(lines) + "\n")
    return folder / "bin"


def server_env(install: TritonInstall, python_bin: Path | None = None) -> dict[str, str]:
    """Bundled libraries and this interpreter's libpython first; this environment's python3 (or `python_bin`'s, the
    models' own environment) first on PATH."""
    env = dict(os.environ)
    lib_dirs = [str(install.libs_dir)]
    own_lib = libpython_dir()
    if own_lib is not None:
        lib_dirs.append(own_lib)
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    # Not resolved: a venv's bin/python is a symlink, and the venv is found through the link's location.
    bin_dir = str(python_bin or Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env["PATH"]]) if env.get("PATH") else bin_dir
    return env


def libpython_dir() -> str | None:
    """The folder of this interpreter's libpython, which the stub links, where the loader would not look itself
    (pyenv, a Python built in a prefix); None for a system folder (a distribution's Python): on LD_LIBRARY_PATH
    it would outrank the RUNPATH of every library the models load, torch's own CUDA libraries among them, with
    whatever versions the system keeps there."""
    folder = sysconfig.get_config_var("LIBDIR")
    if not folder or not Path(folder).is_dir():
        return None
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    system = {Path(p).resolve() for p in ("/lib", "/lib64", "/usr/lib", "/usr/lib64")}
    system |= {Path(p, multiarch).resolve() for p in ("/lib", "/usr/lib") if multiarch}
    return None if Path(folder).resolve() in system else folder
