#!/usr/bin/env bash
# Installs sekd, its Python dependencies and the tools of its tests and docs site (extras test,
# docs) into the current Python (Debian packages for the built-in corpus are installed by
# `sekd data build` itself when missing).
# torch is pinned first: the CPU wheel 2.13.0 satisfies the package's range, so nothing
# pulls a CUDA build afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test,docs]"
