#!/bin/bash
# First GPU contact: full-size random I2VGen-XL, in-process torch fp16 loop vs diffusers fp16 (+ compile if time).
set -o pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOG=$OUT/log.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>$LOG 2>&1 || { echo "pip failed" >>$LOG; exit 1; }
export PYTHONPATH=/tmp/site
cp -r examples /tmp/site/examples
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 -c "import torch,diffusers,transformers,numpy;print(torch.__version__,torch.version.cuda,diffusers.__version__,transformers.__version__,numpy.__version__)"; } >>$LOG 2>&1
I2V="python3 /tmp/site/bin/i2v"
timeout 390 $I2V bench --model full-size-random --device cuda --runners torch,diffusers --repeats 2 --concurrency 0 --output /tmp/gpu >>$LOG 2>&1
echo "bench A rc=$? at ${SECONDS}s" >>$LOG
mkdir -p $OUT/gpu; cp /tmp/gpu/results.* /tmp/gpu/*.png $OUT/gpu/ 2>/dev/null
left=$((555 - SECONDS))
if [ $left -gt 120 ]; then
  timeout $left $I2V bench --model full-size-random --device cuda --runners diffusers-compile --grid 512x512x16,704x1280x16 --repeats 2 --concurrency 0 --output /tmp/compile >>$LOG 2>&1
  echo "bench B rc=$? at ${SECONDS}s" >>$LOG
  mkdir -p $OUT/compile; cp /tmp/compile/results.* $OUT/compile/ 2>/dev/null
fi
nvidia-smi >>$LOG 2>&1
tail -c 6000 $LOG
