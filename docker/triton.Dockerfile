# Triton from NVIDIA's image (tritonserver 2.51 = NGC 24.10), plus what the Python models import:
# the i2v package with its server extra (torch, diffusers, transformers, onnxruntime, PyAV) and the UI's.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
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
RUN pip install --no-cache-dir ".[server,ui]"
