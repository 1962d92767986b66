#!/usr/bin/env bash
# Create RecBole's own virtualenv, beside graphrec's and outside the repository, for
# benchmarks/compare_recbole.py.  Usage: benchmarks/setup_recbole.sh [VENV_DIR]
# (default /work/recbole-venv, or $RECBOLE_VENV).
#
# Pins (RecBole 1.2.1 on Python 3.11 with a current torch):
#   setuptools<81  RecBole's quick_start imports ray, whose import needs pkg_resources;
#   numpy<2        RecBole uses np.bool8; pandas and scipy then need their numpy-1 releases.
# torch >= 2.6 loads checkpoints with weights_only=True; compare_recbole.py patches torch.load in
# RecBole's own process only (its end-of-training reload of its checkpoint), never in graphrec.
set -euo pipefail
VENV="${1:-${RECBOLE_VENV:-/work/recbole-venv}}"
PY="${PYTHON:-python3}"
TORCH="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install "$TORCH" recbole==1.2.1 "setuptools<81" "numpy<2" "pandas<2.3" "scipy<1.14"
"$VENV/bin/python" - <<'PY'
import numpy, torch, recbole
print(f"recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}")
PY
echo "RecBole venv ready: $VENV"
