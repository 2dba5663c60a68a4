#!/bin/bash
# On the device machine, three calls back to back (the machine goes back after 30 s idle), /tmp kept between them:
#   mkdir -p /tmp/wh && cp .gpuA/*.whl /tmp/wh/     carry [".gpuA"]
#   mkdir -p /tmp/wh && cp .gpuB/*.whl /tmp/wh/     carry [".gpuB"]
#   bash .gpuC/gpu-proof.sh                         carry [".gpuC"], timeout_s 600
# The last adds its wheels and runs `make gpu-proof` as the README says, with GPU_PYTHON a venv over the image's
# Python (the venv's packages first, then the image's, torch and pip among them) and one size (GRID, default
# 512x512x16); its output and the results folder it writes, benchmarks/results/<gpu>-full-size-<date>/, come
# back under $OUT.
set -u
mkdir -p /tmp/wh && cp .gpuC/*.whl /tmp/wh/ && ls /tmp/wh
IMAGE_SP=$(python3 -c "import site;print(site.getsitepackages()[0])")
python3 -m venv --without-pip /tmp/gpuenv || exit 1
SP=$(/tmp/gpuenv/bin/python3 -c "import sysconfig;print(sysconfig.get_paths()['purelib'])")
echo "import site; site.addsitedir('$IMAGE_SP')" > "$SP/zz_image_site.pth"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
/tmp/gpuenv/bin/python3 -m pip --version || echo "note: no pip for the venv (the image's site has none): make gpu-proof needs one"
GRID="${GRID-512x512x16}"  # GRID= (empty): the tests only
if command -v make >/dev/null; then
  PROOF=(make gpu-proof WHEELHOUSE=/tmp/wh GPU_PYTHON=/tmp/gpuenv/bin/python3 GPU_GRID="$GRID")
else  # no make on the image: the recipe's own lines (Makefile, gpu-proof)
  echo "note: no make on this image: running the gpu-proof recipe's commands"
  cat > /tmp/proof.sh <<PROOF
set -e; export I2V_STUB_SITE=/tmp/i2v-stub-site; PY=/tmp/gpuenv/bin/python3
\$PY -m pip install -q --no-index --no-deps --upgrade --force-reinstall \$(ls /tmp/wh/*.whl | grep -v /numpy-)
\$PY -m pip install -q --no-index --no-deps --upgrade --target /tmp/i2v-stub-site /tmp/wh/numpy-*.whl
\$PY -P -m pytest -ra -m gpu tests/test_gpu_serving.py tests/test_torch_runtime.py tests/test_tensorrt_engines.py
\$PY -P -m i2v.cli bench --suite gpu --grid $GRID
PROOF
  PROOF=(bash /tmp/proof.sh)
fi
timeout $((570 - SECONDS)) "${PROOF[@]}" 2>&1 | grep -v "it/s\]\|run/s\]\|^[IW][0-9]\{4\} " | tee "$OUT/gpu-proof.txt" \
  | tail -c 5000
rc=${PIPESTATUS[0]}
echo "make gpu-proof rc=$rc at ${SECONDS}s" | tee -a "$OUT/gpu-proof.txt"
# the report only: the results folder also holds the exported model repositories (gitignored, gigabytes)
for results in benchmarks/results/*-full-size-"$(date +%F)"; do
  [ -d "$results" ] && mkdir -p "$OUT/${results##*/}" && cp "$results"/*.* "$OUT/${results##*/}/"
done
exit "$rc"
