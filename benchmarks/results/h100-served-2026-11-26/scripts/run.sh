#!/bin/bash
# Call 2 of 2 on the warm machine of call 1 (.gpu1/setup.sh): the rest of the wheels into its venv, numpy<2 into
# a folder of its own for the models' processes (I2V_STUB_SITE, as make gpu-proof does), then the GPU tests, the
# served torch runtime against the same loop in-process (eager, synchronised per part call, CUDA graphs) at the
# full-size architecture, 512x512x16, 25 steps; 768x768x16 after it if time is left.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false I2V_STUB_SITE=/tmp/np1
LOG=$OUT/log.txt; REPO=$PWD; PY=/tmp/venv/bin/python3
[ -f /tmp/venv/.served ] || { echo "fresh machine: call 1 first" | tee $LOG; exit 3; }
SP=$($PY -c "import sysconfig;print(sysconfig.get_paths()['purelib'])")
{
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SP .gpu2/*.whl
mkdir -p /tmp/np1 && tar xJf .gpu2/client.tar.xz -C $SP tritonclient tritonclient-2.51.0.dist-info \
  && tar xJf .gpu2/client.tar.xz -C /tmp/np1 numpy numpy.libs numpy-1.26.4.dist-info
$PY -c "import numpy, torch, diffusers, transformers, tritonclient.grpc, av, i2v.cli; print('numpy', numpy.__version__, 'torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
echo "installed at ${SECONDS}s"
} >$LOG 2>&1
(cd $REPO/tests && timeout 240 $PY -m pytest -ra -m gpu test_gpu_serving.py test_torch_runtime.py -p no:cacheprovider) >$OUT/pytest.txt 2>&1
echo "pytest rc=$? at ${SECONDS}s" >>$LOG
cd /tmp
B="$PY -P $SP/bin/i2v bench --suite gpu --grid 512x512x16"
timeout $((520 - SECONDS)) $B --runners served,torch,torch-synced --served-runtimes torch --output /tmp/gpu >>$LOG 2>&1
echo "bench rc=$? at ${SECONDS}s" >>$LOG
timeout $((540 - SECONDS)) $B --runners served,torch-cuda-graphs --served-runtimes torch-cuda-graphs --output /tmp/graphs >>$LOG 2>&1
echo "bench graphs rc=$? at ${SECONDS}s" >>$LOG
mkdir -p $OUT/graphs; cp /tmp/gpu/results.json /tmp/gpu/results.md /tmp/gpu/latency.png $OUT/ 2>/dev/null
cp /tmp/graphs/results.json /tmp/graphs/results.md $OUT/graphs/ 2>/dev/null
grep -h "unet: compiled" /tmp/graphs/*/server.log /tmp/*/server.log 2>/dev/null | head -3 >>$LOG
grep -v "^I1126\|^W1126\|it/s\]\|run/s\]" $LOG | tail -c 6000; tail -c 2500 $OUT/pytest.txt
