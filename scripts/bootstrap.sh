#!/usr/bin/env bash
# Create .venv and install nqs-twins with its test extras.
#
# torch is installed first, pinned to 2.13.0: on these machines that release
# is a CPU build on local disk, while an unpinned `torch` would pull a
# several-GB CUDA build. The project's own requirement is a range 2.13.0
# satisfies, so the second pip call installs no other torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
