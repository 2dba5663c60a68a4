#!/bin/bash
# Rebuilds this run's device-call loads (.gpu1/, .gpu2/, .gpu3/ in the checkout, kept out of git by
# .git/info/exclude) from the wheelhouse of `make wheelhouse SERVED=1` (built first where the folder is missing).
# A device call carries at most 64 MiB, so the wheels travel as two loads for one warm machine: .gpu1 the server
# (only the Python 3.12 stub; without the bundled libpython 3.13 it does not link) and PyAV, unpacked and
# repacked as tar.xz, with setup.sh; .gpu2 the other wheels, tritonclient and numpy<2 (for the stubs:
# I2V_STUB_SITE) as tar.xz; .gpu3 the probes with run-probe.sh. Usage, in the checkout:
# bash benchmarks/results/h100-served-2026-11-26/scripts/pack.sh [WHEELHOUSE]
set -euo pipefail
WHEELS=$(realpath -m "${1:-wheelhouse}"); HERE=$(cd "$(dirname "$0")" && pwd)
[ -d "$WHEELS" ] || make wheelhouse SERVED=1 WHEELHOUSE="$WHEELS"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
PLATFORM="--python-version 3.12 --implementation cp --only-binary=:all: --ignore-requires-python"
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_28_x86_64 manylinux_2_35_x86_64; do PLATFORM+=" --platform $tag"; done
into() {  # the wheels unpacked as pip installs them (a wheel's .data, modes), without their commands
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-deps --no-compile $PLATFORM --target "$WORK/$1" "${@:2}"
  rm -rf "$WORK/$1/bin"
}
tarred() { (cd "$WORK/$1" && tar cJf - -- *); }  # members named as in site-packages, no ./ in front
rm -rf .gpu1 .gpu2 .gpu3 && mkdir -p .gpu1 .gpu2 .gpu3

into served "$WHEELS"/nvidia_pytriton-*.whl "$WHEELS"/av-*.whl
find "$WORK/served/pytriton/tritonserver/python_backend_stubs" -mindepth 1 -maxdepth 1 ! -name 3.12 -exec rm -rf {} +
rm -f "$WORK"/served/nvidia_pytriton.libs/libpython3-*.13.so.*
tarred served > .gpu1/served.tar.xz
cp "$HERE/../../h200-served-2026-11-26/scripts/setup.sh" .gpu1/

into client "$WHEELS"/tritonclient-*.whl  # without perf_analyzer (its bin/)
into numpy "$WHEELS"/numpy-*.whl
tarred client > .gpu2/client.tar.xz
tarred numpy > .gpu2/stub-numpy.tar.xz
for name in diffusers transformers tokenizers regex importlib_metadata python_rapidjson i2v_serving; do
  cp "$WHEELS/$name"-*.whl .gpu2/
done
cp "$HERE/run-probe.sh" "$HERE/run-tests.sh" "$HERE/probe.py" "$HERE/kernels.py" .gpu3/
du -sh .gpu1 .gpu2 .gpu3
