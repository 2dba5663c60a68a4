#!/bin/bash
# Call 1 of 2 on one warm machine: a venv over the image's Python whose own site-packages (first on sys.path)
# hold what the served path adds (the embedded Triton server and PyAV here, numpy<2 and the client in call 2),
# with the image's site-packages (torch) after them. What one call carries is capped at 64 MiB.
LOG=$OUT/setup.txt
{
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys,sysconfig,site;print(sys.version.split()[0], sys.prefix, sys.base_prefix, sysconfig.get_config_var('LIBDIR'), sysconfig.get_config_var('Py_ENABLE_SHARED'), site.getsitepackages())"
ldconfig -p | grep libpython3.12; df -h /tmp /dev/shm | tail -2
IMAGE_SP=$(python3 -c "import site;print(site.getsitepackages()[0])")
python3 -m venv --without-pip /tmp/venv || exit 1
SP=$(/tmp/venv/bin/python3 -c "import sysconfig;print(sysconfig.get_paths()['purelib'])")
echo "import site; site.addsitedir('$IMAGE_SP')" > $SP/zz_image_site.pth
tar xJf .gpu1/served.tar.xz -C $SP || exit 1
ls /tmp/venv/bin; readlink -f /tmp/venv/bin/python3
/tmp/venv/bin/python3 -c "import torch, av, pytriton, onnxruntime, PIL; print(torch.__version__, torch.cuda.is_available(), av.__version__, onnxruntime.__version__)"
L=$SP/nvidia_pytriton.libs; LIBDIR=$(/tmp/venv/bin/python3 -c "import sysconfig;print(sysconfig.get_config_var('LIBDIR'))")
LD_LIBRARY_PATH=$L:$LIBDIR ldd $SP/pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub | grep -i "python\|not found"
LD_LIBRARY_PATH=$L $SP/pytriton/tritonserver/bin/tritonserver --version 2>&1 | tail -2
touch /tmp/venv/.served; echo "setup done at ${SECONDS}s"
} >$LOG 2>&1
cat $LOG
