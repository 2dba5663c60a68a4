#!/bin/bash
# Call 2 of 2: the rest of the wheels into the venv of call 1, then the GPU serving tests and the served
# torch runtime against the same loop in-process, full-size architecture, 512x512x16, 25 steps.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOG=$OUT/log.txt; REPO=$PWD
if [ ! -f /tmp/venv/.served ]; then  # a fresh machine: no server; in-process rows only
  echo "no served part (fresh machine)" >$LOG; python3 -m venv --without-pip /tmp/venv
  IMAGE_SP=$(python3 -c "import site;print(site.getsitepackages()[0])"); SERVED=0
else SERVED=1; fi
PY=/tmp/venv/bin/python3; SP=$($PY -c "import sysconfig;print(sysconfig.get_paths()['purelib'])")
[ $SERVED = 0 ] && echo "import site; site.addsitedir('$IMAGE_SP')" > $SP/zz_image_site.pth
{
[ -d $SP/diffusers ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SP .gpu2/*.whl
[ -d $SP/tritonclient ] || tar xJf .gpu2/client.tar.xz -C $SP
$PY -c "import numpy, torch, diffusers, transformers, tritonclient.grpc, i2v.cli; print('numpy', numpy.__version__, 'torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
echo "installed at ${SECONDS}s"
} >>$LOG 2>&1
cd /tmp
if [ $SERVED = 1 ]; then
  (cd $REPO/tests && timeout 170 $PY -m pytest -ra -m gpu test_gpu_serving.py test_torch_runtime.py -p no:cacheprovider) >$OUT/pytest.txt 2>&1
  echo "pytest rc=$? at ${SECONDS}s" >>$LOG
  RUNNERS=served,torch
else RUNNERS=torch,torch-compile; fi
timeout $((545 - SECONDS)) $PY $SP/bin/i2v bench --suite gpu --grid 512x512x16 --runners $RUNNERS --output /tmp/gpu >>$LOG 2>&1
echo "bench rc=$? at ${SECONDS}s" >>$LOG
cp /tmp/gpu/results.json /tmp/gpu/results.md /tmp/gpu/latency.png $OUT/ 2>/dev/null
ls /tmp/gpu >>$LOG; nvidia-smi --query-gpu=memory.used --format=csv >>$LOG
tail -c 5000 $LOG; tail -c 2500 $OUT/pytest.txt 2>/dev/null
