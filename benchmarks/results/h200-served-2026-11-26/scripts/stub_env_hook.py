"""Proof-environment hook (.pth): inside a Python-backend stub only, numpy 1.26 first (2.51's stub needs
numpy<2) and the image's scipy/sklearn hidden (built for numpy 2; find_spec then says absent)."""

import os
import sys

if os.path.basename(os.readlink("/proc/self/exe")).startswith("triton_python"):
    sys.path.insert(0, "/tmp/np1")
    for name in ("scipy", "sklearn"):
        sys.modules[name] = None
