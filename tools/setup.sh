#!/usr/bin/env bash
# Installs everything the toolkit needs on a fresh Debian machine: the Fashion-MNIST
# package (the embedded default data) and a virtual environment with the pinned stack.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  else
    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
         "or unpack it with 'apt-get download dataset-fashion-mnist && dpkg -x ...' and set FASHION_MNIST_DIR." >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
