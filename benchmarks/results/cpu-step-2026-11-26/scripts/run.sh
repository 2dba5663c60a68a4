#!/bin/bash
# Where a served denoising step's time goes on the CPU: the tiny model's ONNX Runtime repository, exported once,
# served with the timing BLS and UNet of this folder, against the same loop in-process. Run from the repository
# root with the project's environment active; writes /tmp/cpu-step/.
set -e
HERE=benchmarks/results/cpu-step-2026-11-26/scripts
mkdir -p /tmp/cpu-step
[ -d /tmp/cpu-step/repository ] || i2v export --output /tmp/cpu-step/repository --skip-check
rm -rf /tmp/cpu-step/timed && cp -r /tmp/cpu-step/repository /tmp/cpu-step/timed
cp $HERE/bls_timing.py /tmp/cpu-step/timed/i2vgen_xl/1/model.py
cp $HERE/unet_timing.py /tmp/cpu-step/timed/unet/1/model.py
export TIMES=/tmp/cpu-step/bls-times.json RUNS=/tmp/cpu-step/unet-runs.json
# argv: height width frames repeats. Served and in-process twice, alternating; then one served request whose
# Triton counters and timers are the same request's
python $HERE/probe.py /tmp/cpu-step/timed "$@" served inprocess served inprocess 2>&1 | grep "^served\|^in-process"
python $HERE/probe.py /tmp/cpu-step/timed "$1" "$2" "$3" 1 served 2>&1 | grep "^served"
# CPU per process while served requests denoise (100 steps each; the window after the server started)
STEPS=100 LOAD_S=30 python $HERE/probe.py /tmp/cpu-step/repository "$1" "$2" "$3" 1 load > /dev/null 2>&1 &
sleep 30 && python $HERE/cpu.py 10 && wait
python - <<'PY'
import json, statistics
bls = json.load(open("/tmp/cpu-step/bls-times.json"))
unet = json.load(open("/tmp/cpu-step/unet-runs.json"))
print("last served request, per call:")
for piece, (ms, calls) in bls.items():
    print(f"  BLS  {piece:24s} {ms / max(calls, 1):8.3f} ms  x {calls}")
for piece, ms in unet.items():
    print(f"  unet {piece:24s} {statistics.mean(ms[-25:]):8.3f} ms  (mean of the last 25)")
PY
# At 64x64x8: the in-process loop with the served path's gaps between UNet calls, alternating, twice
[ "$1x$2x$3" = 64x64x8 ] && for round in 1 2; do
  for args in "0 0" "64 0" "0 5" "64 5"; do python $HERE/gap.py /tmp/cpu-step/repository $args 2>&1 | grep "MiB read"; done
done
