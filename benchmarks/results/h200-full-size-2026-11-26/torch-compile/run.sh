#!/bin/bash
# torch runtime's UNet: eager vs torch.compile (default mode), in-process, full-size random, 512x512x16, 10 steps.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOG=$OUT/log.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>$LOG 2>&1 || exit 1
export PYTHONPATH=/tmp/site
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } >>$LOG 2>&1
timeout 150 python3 /tmp/site/bin/i2v bench --model full-size-random --device cuda --runners torch,torch-compile \
  --grid 512x512x16 --steps 10 --warmup 1 --repeats 1 --concurrency 0 --output $OUT/compile >>$LOG 2>&1
echo "rc=$? at ${SECONDS}s" >>$LOG
rm -f $OUT/compile/*.png; rm -rf $OUT/compile/pipeline-torch
tail -c 3000 $LOG
