#!/usr/bin/env bash
# Installs what serving needs and nothing more (no test tools, one OpenCV build) into the
# environment of $PYTHON. The Docker images run it, and so do `make serve` and a host install:
#   PYTHON=/opt/venv/bin/python scripts/install-runtime.sh            # the package
#   scripts/install-runtime.sh --editable                             # a checkout (make serve)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/install-runtime.sh
#     CPU-only torch from PyTorch's wheel index (about 4 GB less than PyPI's CUDA build)
#   EXTRAS=postgres scripts/install-runtime.sh                        # with PostgreSQL's driver
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
install=("$PYTHON" -m pip install --disable-pip-version-check -c constraints.txt)

if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    # First, from that index alone, so that the project's own install finds them satisfied.
    "${install[@]}" --index-url "$TORCH_INDEX_URL" torch torchvision
fi
project=".${EXTRAS:+[$EXTRAS]}"
if [[ "${1:-}" == "--editable" ]]; then
    "${install[@]}" -e "$project"
else
    "${install[@]}" "$project"
fi
# detect_text reads the three PP-OCR ONNX files inside rapidocr-onnxruntime and none of its
# code. Its dependency on opencv-python (the GUI build, which needs libGL) would be a second
# OpenCV beside EasyOCR's opencv-python-headless in the same cv2 folder: so without its
# dependencies.
"${install[@]}" --no-deps "rapidocr-onnxruntime==1.4.4"
