export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=/tmp/venv/bin/python3; SP=/tmp/venv/lib/python3.12/site-packages; REPO=$PWD; cd /tmp
timeout 125 $PY $REPO/.gpu2/probe.py /tmp/gpu/model_repository-torch >$OUT/probe.txt 2>&1; echo "probe rc=$? at ${SECONDS}s" >>$OUT/probe.txt

echo "compile rc=$? at ${SECONDS}s" >>$OUT/compile-log.txt; cp /tmp/compile/results.json $OUT/compile-results.json; cp /tmp/compile/results.md $OUT/compile-results.md
cat $OUT/probe.txt | grep -v "^I1126\|^W1126" | tail -30; tail -c 2500 $OUT/compile-log.txt
