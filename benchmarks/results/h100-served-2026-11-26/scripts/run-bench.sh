#!/bin/bash
# After setup.sh on the same warm machine: the rest of the wheels (.gpu2/), numpy<2 for the stubs, then one
# `i2v bench` at 512x512x16 with the arguments given after the defaults (--suite gpu's model and repeats):
# served against in-process, each row with the UNet's call alone per step (served: inside the `unet` model by
# Triton's counters; torch-synced: the synchronised call) and the rest of the step between calls.
# `bash .gpu3/run-bench.sh --runners served,torch,torch-synced,torch-cuda-graphs --served-runtimes torch,torch-cuda-graphs`,
# carry [".gpu2", ".gpu3"]; BENCH_ARGS="--device cpu": a CPU dry run.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false I2V_STUB_SITE=/tmp/np1
PY=/tmp/venv/bin/python3; SP=/tmp/venv/lib/python3.12/site-packages
[ -f /tmp/venv/.served ] || { echo "fresh machine: call setup.sh first"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SP .gpu2/*.whl 2>&1 | tail -2
mkdir -p /tmp/np1 && tar xJf .gpu2/client.tar.xz -C $SP && tar xJf .gpu2/stub-numpy.tar.xz -C /tmp/np1
echo "installed at ${SECONDS}s"; cd /tmp; mkdir -p $OUT/bench
timeout $((560 - SECONDS)) $PY -P $SP/bin/i2v bench --suite gpu --grid 512x512x16 --output /tmp/bench "$@" $BENCH_ARGS 2>&1 \
  | grep -v "it/s\]\|run/s\]\|^[IW][0-9]\{4\} " | tail -c 4000
echo "bench rc=${PIPESTATUS[0]} at ${SECONDS}s"; cp /tmp/bench/results.json /tmp/bench/results.md $OUT/bench/ 2>/dev/null
