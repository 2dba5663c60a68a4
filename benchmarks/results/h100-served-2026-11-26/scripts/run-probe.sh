#!/bin/bash
# After setup.sh on the same warm machine (both loads made by pack.sh): the rest of the wheels (.gpu2/), numpy<2
# for the stubs, then one probe script of this folder (copied into .gpu3/) with its arguments; its output comes
# back as <probe>.txt, and any JSON it writes into its output folder beside it. Then, where 200 s of the call's
# 540 are left, the served torch runtime against the same loop in-process at 512x512x16 (bench/), to see the
# probe's finding in the served/in-process ratio. This run: `run-probe.sh probe.py full-size-random 512 512 16
# 10`; the next: `run-probe.sh kernels.py full-size-random 512 512 16`. BENCH_ARGS="--device cpu": a CPU dry run.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false I2V_STUB_SITE=/tmp/np1
REPO=$PWD; PY=/tmp/venv/bin/python3; SP=/tmp/venv/lib/python3.12/site-packages; PROBE=$1; shift
[ -f /tmp/venv/.served ] || { echo "fresh machine: call 1 first"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SP .gpu2/*.whl 2>&1 | tail -2
mkdir -p /tmp/np1 && tar xJf .gpu2/client.tar.xz -C $SP && tar xJf .gpu2/stub-numpy.tar.xz -C /tmp/np1
echo "installed at ${SECONDS}s"; cd /tmp
timeout 300 $PY -P $REPO/.gpu3/$PROBE "$@" /tmp/probe 2>&1 | grep -v "it/s\]\|^[IW][0-9]\{4\} " | tee $OUT/${PROBE%.py}.txt
echo "$PROBE rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a $OUT/${PROBE%.py}.txt
cp /tmp/probe/*.json $OUT/ 2>/dev/null
if [ $SECONDS -lt 340 ]; then
  mkdir -p $OUT/bench
  timeout $((540 - SECONDS)) $PY -P $SP/bin/i2v bench --suite gpu --grid 512x512x16 --runners served,torch \
    --served-runtimes torch --output /tmp/bench $BENCH_ARGS 2>&1 | grep -v "it/s\]\|run/s\]\|^[IW][0-9]\{4\} " | tail -c 3000
  echo "bench rc=${PIPESTATUS[0]} at ${SECONDS}s"; cp /tmp/bench/results.json /tmp/bench/results.md $OUT/bench/ 2>/dev/null
fi
