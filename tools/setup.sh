#!/usr/bin/env bash
# Installs everything the toolkit needs on a fresh Debian/Ubuntu machine: the system packages
# (python3-venv; libgl1 and libglib2.0-0, which opencv loads; the Fashion-MNIST package, the
# embedded default data), then a virtual environment .venv with the pinned stack of
# requirements.txt and the toolkit itself (editable), so `import extrema` works from anywhere.
#
#   PYTHON=python3.12 bash tools/setup.sh   # another interpreter (3.11 or newer)
#   TORCH_VARIANT=cpu bash tools/setup.sh   # CPU-only torch from download.pytorch.org (about 4 GB
#                                           # less than the default CUDA build: no nvidia-*, triton)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
FMNIST=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu

fail() { echo "tools/setup.sh: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH; install Python 3.11 or newer (apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.11."
VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail "Python $VERSION ($(command -v "$PYTHON")) is too old: the pinned stack (torch 2.14.1, matplotlib 3.11, ...) needs Python 3.11 or newer. Install one (e.g. apt-get install python3.11 python3.11-venv) and run: PYTHON=python3.11 bash tools/setup.sh"

# System packages, each checked by what the toolkit uses from it.
missing=()
"$PYTHON" -c 'import ensurepip' 2>/dev/null ||
  missing+=("$([ "$(command -v "$PYTHON")" = /usr/bin/python3 ] && echo python3-venv || echo "python$VERSION-venv")")
if command -v ldconfig >/dev/null; then
  ldconfig -p | grep -q 'libGL\.so\.1 ' || missing+=(libgl1)
  ldconfig -p | grep -q 'libgthread-2\.0\.so\.0 ' || missing+=(libglib2.0-0)
fi
[ -f "$FMNIST/train-images-idx3-ubyte.gz" ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "Installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    fail "missing system packages: ${missing[*]}. Run as root:
    sudo apt-get update && sudo apt-get install -y ${missing[*]}
then run this script again.$([[ " ${missing[*]} " == *" dataset-fashion-mnist "* ]] && echo "
Without root, Fashion-MNIST can be unpacked anywhere: apt-get download dataset-fashion-mnist &&
dpkg -x dataset-fashion-mnist_*.deb fmnist && export FASHION_MNIST_DIR=\$PWD/fmnist/usr/share/datasets/fashion-mnist")"
  fi
fi

# A .venv without a working pip (an interrupted `python -m venv`, or one made before
# python3-venv was installed) or with an old interpreter is rebuilt.
if [ -d .venv ] && ! { .venv/bin/python -m pip --version >/dev/null 2>&1 &&
                       .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; }; then
  echo "Rebuilding .venv (no working pip, or Python older than 3.11)"
  rm -rf .venv
fi
[ -d .venv ] || "$PYTHON" -m venv .venv

PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ "${TORCH_VARIANT:-cuda}" = cpu ]; then
  # The CPU wheels (torch==X matches X+cpu) first; requirements.txt then finds them installed.
  "${PIP[@]}" --index-url "$CPU_TORCH_INDEX" $(grep -E '^(torch|torchvision)==' requirements.txt)
elif [ "${TORCH_VARIANT:-cuda}" != cuda ]; then
  fail "TORCH_VARIANT must be 'cuda' (the default) or 'cpu', got '$TORCH_VARIANT'."
fi
"${PIP[@]}" -r requirements.txt
"${PIP[@]}" --no-deps --no-build-isolation -e .
