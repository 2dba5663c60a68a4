#!/bin/bash
# After setup.sh and run-probe.sh on the same warm machine, where device time is left: the GPU tests (served
# KIND_GPU torch runtime = in-process loop, eager and CUDA graphs; the side-stream hand-off; fp16 parts; a LoRA
# request on the GPU server; CUDA graphs at their capacity; CUDA graphs' captures giving back their warm-ups'
# memory; a foreign cuDNN refused at load), into $OUT/pytest.txt. All ten passed on an H100 in h100-stub-2026-11-26.
# `bash .gpu3/run-tests.sh`, carry [".gpu3"]; the tests' i2v is the wheel's in .gpu2 (rebuild it by pack.sh).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false I2V_STUB_SITE=/tmp/np1
PY=/tmp/venv/bin/python3
[ -f /tmp/venv/.served ] && [ -d /tmp/np1/numpy ] || { echo "call setup.sh and run-probe.sh first"; exit 3; }
cd tests && timeout "${1:-280}" $PY -m pytest -ra -m gpu test_gpu_serving.py test_torch_runtime.py -p no:cacheprovider \
  2>&1 | grep -v "^[IW][0-9]\{4\} " > $OUT/pytest.txt
echo "pytest rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a $OUT/pytest.txt; tail -c 4000 $OUT/pytest.txt
