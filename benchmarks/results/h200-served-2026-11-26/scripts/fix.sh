#!/bin/bash
# Between call 2 and 3 (same warm machine): the image's scipy/sklearn need numpy 2 in the client process, while
# the Python-backend stubs need numpy<2. numpy 1.26 moves to /tmp/np1, put first on sys.path only inside a
# stub process (a .pth line); its dist-info stays so the launcher's numpy check reads the stubs' version.
SP=/tmp/venv/lib/python3.12/site-packages
mkdir -p /tmp/np1 && rm -rf $SP/numpy $SP/numpy.libs && tar xJf .gpu2/client.tar.xz -C /tmp/np1 numpy numpy.libs numpy-1.26.4.dist-info
echo "import os, sys; os.path.basename(os.readlink('/proc/self/exe')).startswith('triton_python') and sys.path.insert(0, '/tmp/np1')" > $SP/aa_stub_numpy1.pth
/tmp/venv/bin/python3 -c "import numpy, diffusers, transformers; from diffusers import AutoencoderKL; print('client numpy', numpy.__version__)"
