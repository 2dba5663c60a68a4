#!/bin/bash
# Prepared for the next GPU run: `make gpu-proof` itself on the device machine, the wheelhouse carried as it is.
# A device call carries at most 64 MiB with the checkout, so the wheels of `make wheelhouse SERVED=1` (about
# 140 MB) travel in three loads, one call each on the same warm machine: .gpuA the server (nvidia-pytriton),
# .gpuB PyAV and numpy<2, .gpuC the rest. Usage, in the checkout (the folders are kept out of git by
# .git/info/exclude's `.gpu*/`): bash benchmarks/results/h200-gpu-proof-2026-11-27/scripts/loads.sh [WHEELHOUSE]
set -euo pipefail
WHEELS=$(realpath -m "${1:-wheelhouse}")
[ -d "$WHEELS" ] || make wheelhouse SERVED=1 WHEELHOUSE="$WHEELS"
rm -rf .gpuA .gpuB .gpuC && mkdir -p .gpuA .gpuB .gpuC
cp "$WHEELS"/nvidia_pytriton-*.whl .gpuA/
cp "$WHEELS"/av-*.whl "$WHEELS"/numpy-*.whl .gpuB/
find "$WHEELS" -name '*.whl' ! -name 'nvidia_pytriton-*' ! -name 'av-*' ! -name 'numpy-*' -exec cp {} .gpuC/ \;
cp "$(dirname "$0")/gpu-proof.sh" .gpuC/
du -sh .gpuA .gpuB .gpuC
