# Triton from NVIDIA's image, plus what the Python models import: the i2v package with its server extra (torch,
# diffusers, transformers, onnxruntime, PyAV), the UI's, and TensorRT's Python package for `i2v export`.
#
# NGC tritonserver 24.10 = Triton 2.51, Ubuntu 22.04, CUDA 12.6.2, TensorRT 10.5.0.18; it needs an NVIDIA driver
# >= 560 (data-center GPUs: also 470.57+, 525.85+, 535.86+ or 545.23+, through CUDA forward compatibility).
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# The image's Python is 3.10, but diffusers 0.42.1 (pinned in pyproject.toml) needs 3.11. Ubuntu 22.04's
# python3.11 in a virtual environment first on PATH: the Python-backend stub runs the python3 it finds on PATH,
# so the models import this environment's packages (docs/embedded-triton.md); libpython3.11 is for the stub.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv libpython3.11 \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/i2v/venv
ENV PATH=/opt/i2v/venv/bin:$PATH
RUN python3.11 -m venv "$VIRTUAL_ENV" && pip install --no-cache-dir --upgrade pip

# torch's PyPI wheel brings its own CUDA runtime: 2.10.0's is CUDA 12.8, which runs on the driver this image
# needs (>= 560) through CUDA 12's minor-version compatibility. 2.10.0 is the newest torch whose PyPI wheel is
# CUDA 12 (2.11 on are CUDA 13: driver >= 580). Older ones do not run this project: diffusers 0.42.1 calls
# torch.accelerator (torch >= 2.6; it declares torch>=2.6), torch 2.5's ONNX exporter ignores the
# custom_translation_table and optimize the export passes, and torch 2.7.1's torch.export refuses the dynamic
# batch axis. Installed before the package, so that its `torch>=2.10` is already met.
RUN pip install --no-cache-dir torch==2.10.0
# TensorRT's Python package, for `i2v export --runtime tensorrt`. It must equal the base image's TensorRT
# (24.10: 10.5.0): Triton loads an engine only in the TensorRT version that built it. Change both together
# (tests/test_deploy_configs.py holds them equal).
RUN pip install --no-cache-dir tensorrt-cu12==10.5.0 --extra-index-url https://pypi.nvidia.com

WORKDIR /opt/i2v
COPY pyproject.toml README.md ./
# one COPY per package folder of pyproject.toml's package-dir (tests/test_deploy_configs.py holds them equal)
COPY i2v ./i2v
COPY client ./client
COPY ui ./ui
COPY serving ./serving
COPY export ./export
COPY benchmarks ./benchmarks
COPY examples ./examples
COPY gateway ./gateway
# the Triton container's entrypoint: drains (i2v drain) before stopping tritonserver
COPY docker/triton-entrypoint.sh ./docker/triton-entrypoint.sh
RUN pip install --no-cache-dir ".[server,ui]"

# The image's Python-backend stub embeds Python 3.10. nvidia-pytriton (a server dependency) ships the same
# Triton's (2.51) stub for each Python: link the 3.11 one in its place (a link, so that the stub still finds
# the CUDA runtime beside it in the wheel through its $ORIGIN-relative RPATH).
RUN stub="$(python -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent)')/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" \
    && test -x "$stub" \
    && ln -sf "$stub" /opt/tritonserver/backends/python/triton_python_backend_stub
