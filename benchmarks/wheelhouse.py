"""`python -m i2v.benchmarks.wheelhouse FOLDER`: the wheels a bare GPU host lacks, for `make gpu-proof` there.

Made for a GPU host that has Python 3.12 and PyTorch with CUDA but no network (and no diffusers, an older or
newer transformers, no Triton client or server, no PyAV), on a machine that has the network. Two parts:

- core (about 20 MB): diffusers and transformers at this project's pins, the few packages transformers
  checks at import, and this project's own wheel: enough for the in-process runners and diffusers;
- served (`--served`, about 120 MB more): the embedded Triton server (nvidia-pytriton), numpy<2 for its
  Python backend, tritonclient and PyAV: the served rows and the GPU serving tests.

Versions come from the installed `i2v-serving` and `transformers` metadata, so they are this checkout's pins.
Install there with `pip install --no-index --no-deps FOLDER/*.whl` (the Makefile's `gpu-proof` does).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYTHON = "3.12"
# manylinux tags pip must be told of one by one; nvidia-pytriton is built for glibc 2.35
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_35_x86_64")
CORE = ("diffusers", "transformers")
CORE_DEPENDENCIES = ("tokenizers", "regex", "importlib_metadata")  # what transformers/diffusers check at import
SERVED = ("nvidia-pytriton", "numpy", "tritonclient", "av", "python-rapidjson")
# Where the pin differs from this project's requirement: the client of the embedded server's own release
# (nvidia-pytriton 0.7.0 ships tritonserver 2.51). Later clients import ml_dtypes and need protobuf >= 6.33 when
# imported, which a GPU image may lack (the wheels install with --no-deps); 2.51 ran on both GPU images so far.
GPU_HOST_PINS = {"tritonclient": "tritonclient==2.51.0"}


def pinned(package: str) -> str:
    """The requirement this project (or transformers, for its own dependencies) states for `package`: all its
    lines together, extras included (numpy: the client's `>=1.24` and the server's `<2`)."""
    for owner in ("i2v-serving", "transformers", "diffusers", "tritonclient"):
        requirements = [Requirement(line) for line in importlib.metadata.requires(owner) or ()]
        found = [r for r in requirements if canonicalize_name(r.name) == canonicalize_name(package)]
        if found:
            specifier = found[0].specifier
            for requirement in found[1:]:
                specifier &= requirement.specifier
            return f"{found[0].name}{specifier}"
    return package


def download(requirements: list[str], folder: Path) -> None:
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version"]
    command += [PYTHON, "--implementation", "cp", *platforms, "-d", str(folder), *requirements]
    subprocess.run(command, check=True)


def project_wheel(folder: Path) -> Path:
    """This checkout as a wheel (the GPU host runs the code being proven, not a release), built from a copy of
    just what pyproject.toml names: setuptools builds in the source tree, where a stale build/ would leak in."""
    import shutil
    import tempfile

    import tomllib

    root = Path(__file__).resolve().parents[1]
    folder = Path(folder).resolve()  # pip runs in a temporary folder
    project = tomllib.loads((root / "pyproject.toml").read_text())
    with tempfile.TemporaryDirectory(prefix="i2v-wheel-") as work:
        source = Path(work)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy2(root / name, source / name)
        for package in project["tool"]["setuptools"]["package-dir"].values():
            shutil.copytree(root / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(folder)]
        subprocess.run([*command, str(source)], check=True, cwd=work)
    return next(Path(folder).glob("i2v_serving-*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m i2v.benchmarks.wheelhouse", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="where the wheels go")
    parser.add_argument("--served", action="store_true", help="also the embedded server, its client and PyAV")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    requirements = [pinned(p) for p in (*CORE, *CORE_DEPENDENCIES)]
    if args.served:
        requirements += [GPU_HOST_PINS.get(p) or pinned(p) for p in SERVED]
    download(requirements, args.folder)
    project_wheel(args.folder)
    wheels = sorted(args.folder.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {size:.0f} MiB in {args.folder}: " + ", ".join(w.name.split("-")[0] for w in wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
