# Triton from NVIDIA's image (tritonserver 2.51 = NGC 24.10), plus what the Python models import:
# the i2v package with its server extra (torch, diffusers, transformers, onnxruntime, PyAV) and the UI's.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
WORKDIR /opt/i2v
COPY pyproject.toml README.md ./
COPY i2v ./i2v
COPY export ./export
COPY client ./client
COPY ui ./ui
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir ".[server,ui]"
