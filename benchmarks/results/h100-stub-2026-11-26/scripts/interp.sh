#!/bin/bash
# One call, fresh machine: diffusers (and the two modules it needs beyond the image) into /tmp/t, then interp.py
# alternately under /usr/bin/python3.12 (static libpython) and pydl (the shared libpython the stub embeds).
# `bash .gpu4/interp.sh cuda full`, carry [".gpu4"]. CPU dry run: PY=python3.11 bash .gpu4/interp.sh cpu tiny.
V=${PY:-python3.12}; LIB=/usr/lib/x86_64-linux-gnu/lib$V.so.1.0
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/t .gpu4/*.whl 2>&1 | tail -2
SITE=$(/usr/bin/$V -c "import site,sys;print(':'.join(p for p in sys.path if 'packages' in p))")
export PYTHONPATH=/tmp/t:${IMAGE_SITE:-/opt/torch/.venv/lib/python3.12/site-packages}:$SITE PYTHONUNBUFFERED=1
chmod +x .gpu4/pydl; ldd /usr/bin/$V | grep -c python; ls -la $LIB
for i in 1 2; do
  timeout 120 /usr/bin/$V .gpu4/interp.py "$@" 2>&1 | tail -1
  timeout 120 .gpu4/pydl $LIB .gpu4/interp.py "$@" 2>&1 | tail -1
done | tee ${OUT:-/tmp}/interp.txt
echo "done at ${SECONDS}s"
